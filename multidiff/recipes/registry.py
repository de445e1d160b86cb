"""The recipe registry: names -> recipes, filled by each recipe module's own :func:`register`
calls, asked by the CLI and the runnable scripts (which hold no domain knowledge)."""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass, fields, replace
from typing import Callable

from ..train.checkpoint import load_config
from .base import OPTIONAL_ENTRY_POINTS, Domain


@dataclass(frozen=True)
class Recipe:
    """A registered recipe: its name, a one-line description, its config class and its domain's
    entry points. ``inpaint``, ``infill``, ``plan``, ``write_plan`` and ``calibration`` are None
    where the domain has no such verb (see :meth:`verbs`)."""

    name: str
    description: str
    domain: Domain

    @property
    def config_class(self) -> type:
        return self.domain.configs[self.name]

    @property
    def train(self) -> Callable:
        return self.domain.train

    @property
    def sample(self) -> Callable:
        return self.domain.sample

    @property
    def evaluate(self) -> Callable:
        return self.domain.evaluate

    @property
    def write_samples(self) -> Callable:
        return self.domain.write_samples

    @property
    def sample_options(self) -> tuple[str, ...]:
        return self.domain.sample_options

    def verbs(self) -> tuple[str, ...]:
        return self.domain.verbs()

    def __getattr__(self, name: str):  # the optional verbs: None where the domain has none
        if name in OPTIONAL_ENTRY_POINTS:
            return getattr(self.domain, name, None)
        raise AttributeError(name)


RECIPES: dict[str, Recipe] = {}


def register(domain: Domain, descriptions: dict[str, str]) -> None:
    """Register ``domain``'s recipes, ``name -> one-line description`` (each name must be one of
    ``domain.configs``)."""
    for name, description in descriptions.items():
        if name not in domain.configs:
            raise ValueError(f"recipe {name!r} has no config class in {type(domain).__name__}.configs")
        if name in RECIPES:
            raise ValueError(f"recipe {name!r} is registered twice")
        RECIPES[name] = Recipe(name, description, domain)


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


def parse_setting(name: str, kind: type, text: str):
    """``text`` (from ``--set name=text``) as a value of ``kind``: bool (true/false, yes/no, on/off,
    1/0), int or float; a ValueError that names the setting otherwise."""
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
        values[name] = parse_setting(name, kind, value) if isinstance(value, str) and kind is not str else value
    return replace(recipe.config_class(), **values)


__all__ = ["RECIPES", "Recipe", "get_recipe", "make_config", "parse_setting", "recipe_of_run", "register"]
