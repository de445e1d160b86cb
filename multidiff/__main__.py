"""``python -m multidiff`` runs the command line, like the ``multidiff`` script."""

from .cli import main

main()
