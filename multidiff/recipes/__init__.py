"""Recipes: one per domain/dataset, composing data, backbones, training and
metrics. Each is a set of importable functions; ``RECIPES`` maps names to
them for the CLI and for the runnable scripts in the top-level ``recipes/``.

Every recipe offers

=================  ===========================================================
``config_class``   a frozen dataclass of its settings, validated on creation
``train``          ``train(config, out=None, *, progress=False) -> run_dir``
``sample``         ``sample(run_dir, *, num, sampler=None, steps=None, seed=0,
                   progress=False, label=None, guidance=None) -> samples``
                   (``label`` / ``guidance``: class-conditional recipes only;
                   others raise ValueError when given them)
``write_samples``  ``write_samples(samples, stem, run_dir) -> paths`` (the
                   domain's own rendering, e.g. a scatter plot or an image
                   grid, plus .npz)
``evaluate``       ``evaluate(run_dir, *, num=None, sampler=None, steps=None,
                   seed=0, progress=False, guidance=None) -> dict``
                   (JSON-able metrics)
``inpaint``        image, audio and text recipes (else None): ``inpaint(run_dir,
                   *, num, region, label, guidance, reconstruction_scale, ...)``
                   (``region=None``: the recipe's default hole)
``infill``         text recipes (else None): ``infill(run_dir, template, *,
                   num, ...)`` fills a template's ``___`` blanks
=================  ===========================================================
"""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass, fields, replace
from typing import Callable

from ..train.checkpoint import load_config
from . import audio, images, text, toy2d, trajectory


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    config_class: type
    train: Callable
    sample: Callable
    write_samples: Callable
    evaluate: Callable
    inpaint: Callable | None = None  # fill holes in held-out data (``multidiff inpaint``)
    infill: Callable | None = None  # fill a template's blanks (``multidiff infill``)
    plan: Callable | None = None  # run the planner in its environment (``multidiff plan``)
    write_plan: Callable | None = None  # a plan report's picture and JSON
    calibration: Callable | None = None  # (run_dir, num) -> CalibrationProblem (``multidiff calibrate``)


RECIPES: dict[str, Recipe] = {
    "toy2d": Recipe("toy2d", "residual-MLP denoiser on a 2-D point cloud (moons, spiral, ...), CPU, < 1 min",
                    toy2d.Toy2DConfig, toy2d.train, toy2d.sample, toy2d.write_samples, toy2d.evaluate,
                    calibration=toy2d.calibration_problem),
}
_IMAGE_RECIPES = {
    "digits": "class-conditional U-Net on sklearn's 8x8 digits with classifier-free guidance, CPU, ~4 min",
    "fashion_unet": "class-conditional U-Net (~36M) on Fashion-MNIST 28x28, sized for one GPU",
    "fashion_dit": "class-conditional DiT-S/2 (~32M) on Fashion-MNIST 28x28, sized for one GPU",
    "superres": "2x super-resolution of MNIST-5k digits (14x14 -> 28x28), U-Net conditioned on the low-res image",
}

_AUDIO_RECIPES = {
    "spoken_digits": "class-conditional spectrogram diffusion of spoken digits (espeak-ng/flite voices), "
                     "temporal U-Net, Griffin-Lim to WAV, CPU, ~11 min",
    "notes": "pitch- and instrument-conditional notes rendered by fluidsynth, temporal U-Net, CPU",
    "spoken_digits_gpu": "spoken digits at 16 kHz, 64 mels x 1 s, 2-D U-Net (~36M), sized for one GPU",
    "notes_gpu": "notes at 16 kHz, 128 mels x 1 s, 2-D U-Net (~36M), sized for one GPU",
}
_TEXT_RECIPES = {
    "wordnet": "Diffusion-LM-style text: WordNet example sentences (--dataset wordnet_fortunes: + a fortune style), "
               "word embeddings learned with a 1-D DiT, length/keyword/style control and infilling, CPU, ~13 min",
    "wordnet_gpu": "the text recipe at GPU size: WordNet + fortunes styles, 24-token sentences, 12k words, a 1-D DiT "
                   "(~61M)",
}
_TRAJECTORY_RECIPES = {
    "pointmaze_umaze": "Diffuser-style trajectory planning on gymnasium-robotics PointMaze U-Maze, temporal U-Net, "
                       "start and goal by inpainting, CPU",
    "pointmaze_medium": "trajectory planning on PointMaze Medium, sized for one GPU",
    "pointmaze_large": "trajectory planning on PointMaze Large, sized for one GPU",
    "pendulum": "reward-maximising planning on gymnasium Pendulum with value guidance, CPU",
}
for _module, _descriptions in ((images, _IMAGE_RECIPES), (audio, _AUDIO_RECIPES), (text, _TEXT_RECIPES),
                               (trajectory, _TRAJECTORY_RECIPES)):
    for _name, _description in _descriptions.items():
        RECIPES[_name] = Recipe(_name, _description, _module.CONFIGS[_name], _module.train, _module.sample,
                                _module.write_samples, _module.evaluate, _module.inpaint_test,
                                getattr(_module, "infill", None), getattr(_module, "plan", None),
                                getattr(_module, "write_plan", None), getattr(_module, "calibration_problem", None))


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    return RECIPES[name]


def recipe_of_run(run_dir: str | os.PathLike) -> Recipe:
    """The recipe that wrote run folder ``run_dir`` (from its config.json)."""
    name = load_config(run_dir)["config"].get("recipe")
    if name not in RECIPES:
        raise ValueError(f"{str(run_dir)!r} was not written by a known recipe (its config names {name!r}); "
                         f"known: {', '.join(RECIPES)}")
    return RECIPES[name]


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _parse(name: str, kind: type, text: str):
    if kind is bool:
        if text.lower() not in _TRUE + _FALSE:
            raise ValueError(f"{name} expects true or false, got {text!r}")
        return text.lower() in _TRUE
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name} expects {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def make_config(recipe: Recipe, overrides: dict[str, object]):
    """The recipe's default config with ``overrides`` applied. String values
    (from ``--set key=value``) are parsed by the field's type; the config's own
    checks run on the result."""
    types = typing.get_type_hints(recipe.config_class)
    known = [f.name for f in fields(recipe.config_class)]
    values = {}
    for name, value in overrides.items():
        if name not in known:
            raise ValueError(f"recipe {recipe.name!r} has no setting {name!r}; its settings are: {', '.join(known)}")
        kind = types[name]
        values[name] = _parse(name, kind, value) if isinstance(value, str) and kind is not str else value
    return replace(recipe.config_class(), **values)


__all__ = ["RECIPES", "Recipe", "get_recipe", "make_config", "recipe_of_run"]
