"""Train the ``pendulum`` RL recipe: ``python recipes/pendulum.py [OPTIONS]``.

Same options as ``multidiff train pendulum`` (``--steps``, ``--device``, ``--out DIR``,
``--resume``, ``--set key=value`` ...); the recipe lives in
:mod:`multidiff.recipes.trajectory` (see docs/rl.md). Under several GPUs:
``torchrun --nproc_per_node N recipes/pendulum.py --out DIR``.
"""

import sys

from multidiff.cli import main

if __name__ == "__main__":
    main(["train", "pendulum", *sys.argv[1:]], prog_name="multidiff")
