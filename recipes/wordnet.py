"""Train the ``wordnet`` text recipe: ``python recipes/wordnet.py [OPTIONS]``.

Same options as ``multidiff train wordnet`` (``--steps``, ``--device``, ``--out DIR``,
``--resume``, ``--set key=value`` ...); the recipe lives in
:mod:`multidiff.recipes.text` (see docs/text.md). Under several GPUs:
``torchrun --nproc_per_node N recipes/wordnet.py --out DIR``.
"""

import sys

from multidiff.cli import main

if __name__ == "__main__":
    main(["train", "wordnet", *sys.argv[1:]], prog_name="multidiff")
