"""Train the toy 2-D recipe: ``python recipes/toy2d.py [OPTIONS]``.

Same options as ``multidiff train toy2d`` (``--dataset spiral``, ``--steps``,
``--out DIR``, ``--set width=128`` ...); the recipe itself lives in
:mod:`multidiff.recipes.toy2d`, importable as
``from multidiff.recipes.toy2d import Toy2DConfig, train``.
"""

import sys

from multidiff.cli import main

if __name__ == "__main__":
    main(["train", "toy2d", *sys.argv[1:]], prog_name="multidiff")
