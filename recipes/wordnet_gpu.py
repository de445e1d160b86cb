"""Train the ``wordnet_gpu`` text recipe: ``python recipes/wordnet_gpu.py [OPTIONS]``.

Same options as ``multidiff train wordnet_gpu`` (``--steps``, ``--device``, ``--out DIR``,
``--resume``, ``--set key=value`` ...); the recipe lives in
:mod:`multidiff.recipes.text` (see docs/text.md). Under several GPUs:
``torchrun --nproc_per_node N recipes/wordnet_gpu.py --out DIR``.
"""

import sys

from multidiff.cli import main

if __name__ == "__main__":
    main(["train", "wordnet_gpu", *sys.argv[1:]], prog_name="multidiff")
