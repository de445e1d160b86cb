"""Train the ``spoken_digits`` audio recipe: ``python recipes/spoken_digits.py [OPTIONS]``.

Same options as ``multidiff train spoken_digits`` (``--steps``, ``--device``, ``--out DIR``,
``--resume``, ``--set key=value`` ...); the recipe lives in
:mod:`multidiff.recipes.audio` (see docs/audio.md). Under several GPUs:
``torchrun --nproc_per_node N recipes/spoken_digits.py --out DIR``.
"""

import sys

from multidiff.cli import main

if __name__ == "__main__":
    main(["train", "spoken_digits", *sys.argv[1:]], prog_name="multidiff")
