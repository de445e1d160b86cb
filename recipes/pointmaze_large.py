"""Train the ``pointmaze_large`` RL recipe: ``python recipes/pointmaze_large.py [OPTIONS]``.

Same options as ``multidiff train pointmaze_large`` (``--steps``, ``--device``, ``--out DIR``,
``--resume``, ``--set key=value`` ...); the recipe lives in
:mod:`multidiff.recipes.trajectory` (see docs/rl.md). Under several GPUs:
``torchrun --nproc_per_node N recipes/pointmaze_large.py --out DIR``.
"""

import sys

from multidiff.cli import main

if __name__ == "__main__":
    main(["train", "pointmaze_large", *sys.argv[1:]], prog_name="multidiff")
