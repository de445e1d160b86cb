"""Train the ``notes`` audio recipe: ``python recipes/notes.py [OPTIONS]``.

Same options as ``multidiff train notes`` (``--steps``, ``--device``, ``--out DIR``,
``--resume``, ``--set key=value`` ...); the recipe lives in
:mod:`multidiff.recipes.audio` (see docs/audio.md). Under several GPUs:
``torchrun --nproc_per_node N recipes/notes.py --out DIR``.
"""

import sys

from multidiff.cli import main

if __name__ == "__main__":
    main(["train", "notes", *sys.argv[1:]], prog_name="multidiff")
