"""Train the ``pointmaze_umaze`` RL recipe: ``python recipes/pointmaze_umaze.py [OPTIONS]``.

Same options as ``multidiff train pointmaze_umaze`` (``--steps``, ``--device``, ``--out DIR``,
``--resume``, ``--set key=value`` ...); the recipe lives in
:mod:`multidiff.recipes.trajectory` (see docs/rl.md). Under several GPUs:
``torchrun --nproc_per_node N recipes/pointmaze_umaze.py --out DIR``.
"""

import sys

from multidiff.cli import main

if __name__ == "__main__":
    main(["train", "pointmaze_umaze", *sys.argv[1:]], prog_name="multidiff")
