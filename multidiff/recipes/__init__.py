"""Recipes: one module per domain, each declaring what differs from the shared skeleton
(:mod:`multidiff.recipes.base`) and registering its recipes (:mod:`multidiff.recipes.registry`).
``RECIPES`` maps names to them for the CLI and for the runnable scripts in the top-level
``recipes/``.

Every recipe offers

=================  ===========================================================
``config_class``   a frozen dataclass of its settings, validated on creation
``train``          ``train(config, out=None, *, progress=False) -> run_dir``
``sample``         ``sample(run_dir, *, num, sampler=None, steps=None, seed=0,
                   progress=False, label=None, guidance=None, **sample_options)
                   -> samples`` (``label`` / ``guidance``: class-conditional
                   recipes only; others raise ValueError when given them)
``write_samples``  ``write_samples(samples, stem, run_dir) -> paths`` (the
                   domain's own rendering, e.g. a scatter plot or an image
                   grid, plus .npz)
``evaluate``       ``evaluate(run_dir, *, num=None, sampler=None, steps=None,
                   seed=0, progress=False, guidance=None) -> dict``
                   (JSON-able metrics)
``verbs()``        the optional verbs it has, of inpaint (``inpaint(run_dir, *,
                   num, region, label, guidance, reconstruction_scale, ...)``),
                   infill (``infill(run_dir, template, *, num, ...)``), plan
                   (``plan(run_dir, *, episodes, ...)`` and ``write_plan``) and
                   calibrate (``calibration(run_dir, num)``); the attribute of
                   a verb it lacks is None
=================  ===========================================================
"""

from __future__ import annotations

# each module registers its recipes on import, in this order (the order `multidiff recipes` lists them)
from . import toy2d  # noqa: F401,I001
from . import images  # noqa: F401
from . import audio  # noqa: F401
from . import text  # noqa: F401
from . import trajectory  # noqa: F401
from . import prompted  # noqa: F401
from .registry import RECIPES, Recipe, get_recipe, make_config, recipe_of_run

__all__ = ["RECIPES", "Recipe", "get_recipe", "make_config", "recipe_of_run"]

