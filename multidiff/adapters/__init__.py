"""Adapters (layer 2): one module per domain (``multidiff.adapters.image``, ...).

Nothing is imported here, so importing one adapter never pulls in another
domain's libraries; import the module you need."""
