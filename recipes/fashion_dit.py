"""Train the ``fashion_dit`` image recipe: ``python recipes/fashion_dit.py [OPTIONS]``.

Same options as ``multidiff train fashion_dit`` (``--steps``, ``--device``, ``--out DIR``,
``--resume``, ``--set key=value`` ...); the recipe lives in
:mod:`multidiff.recipes.images` (see docs/images.md). Under several GPUs:
``torchrun --nproc_per_node N recipes/fashion_dit.py --out DIR``.
"""

import sys

from multidiff.cli import main

if __name__ == "__main__":
    main(["train", "fashion_dit", *sys.argv[1:]], prog_name="multidiff")
