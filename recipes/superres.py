"""Train the ``superres`` image recipe: ``python recipes/superres.py [OPTIONS]``.

Same options as ``multidiff train superres`` (``--steps``, ``--device``, ``--out DIR``,
``--resume``, ``--set key=value`` ...); the recipe lives in
:mod:`multidiff.recipes.images` (see docs/images.md). Under several GPUs:
``torchrun --nproc_per_node N recipes/superres.py --out DIR``.
"""

import sys

from multidiff.cli import main

if __name__ == "__main__":
    main(["train", "superres", *sys.argv[1:]], prog_name="multidiff")
