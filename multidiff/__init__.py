"""multidiff: a multimodal diffusion toolkit.

One exact diffusion core (``multidiff.core``: schedules, preconditioning,
losses, samplers, guidance, likelihood) with domain adapters on top.
"""

__version__ = "0.1.0"
