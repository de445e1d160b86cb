"""Helpers shared by the backbones' frozen dataclass configs.

Configs travel through JSON (``backbone_to_config`` -> ``config.json`` ->
``backbone_from_config``), which turns tuples into lists; the configs coerce
them back in ``__post_init__`` so that a reloaded config compares equal to
the original.
"""

from __future__ import annotations

from dataclasses import fields


def freeze_ints(config, name: str) -> tuple[int, ...]:
    """Set ``config.<name>`` (a frozen dataclass field given as a list or tuple) to a tuple of ints."""
    value = getattr(config, name)
    try:
        items = tuple(value)
    except TypeError:
        items = None
    if items is None or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ValueError(f"{type(config).__name__}.{name} must be a sequence of ints, got {value!r}")
    object.__setattr__(config, name, items)
    return items


def freeze_image_size(config, name: str = "image_size") -> tuple[int, int]:
    """Check ``config.image_size`` (an int for square images, or ``(H, W)``); returns ``(H, W)``.
    An int stays an int; a pair becomes a tuple."""
    value = getattr(config, name)
    if isinstance(value, int) and not isinstance(value, bool):
        hw = (value, value)
    else:
        try:
            hw = freeze_ints(config, name)
        except ValueError:
            hw = ()
        if len(hw) != 2:
            raise ValueError(f"{type(config).__name__}.{name} must be an int or a pair (H, W), got {value!r}")
    if min(hw) < 1:
        raise ValueError(f"{type(config).__name__}.{name} must be positive, got {value!r}")
    return hw


def image_hw(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """``(H, W)`` of a config's ``image_size``."""
    return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)


def check_positive(config, *names: str) -> None:
    for name in names:
        if getattr(config, name) < 1:
            raise ValueError(f"{type(config).__name__}.{name} must be >= 1, got {getattr(config, name)}")


def check_non_negative(config, *names: str) -> None:
    for name in names:
        if getattr(config, name) < 0:
            raise ValueError(f"{type(config).__name__}.{name} must be >= 0, got {getattr(config, name)}")


def check_dropout(config) -> None:
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"{type(config).__name__}.dropout must be in [0, 1), got {config.dropout}")


def from_preset(cls, presets: dict[str, dict], name: str, overrides: dict):
    """``cls(**presets[name], **overrides)``, naming the choices when ``name`` or a field is unknown."""
    if name not in presets:
        raise ValueError(f"unknown {cls.__name__} preset {name!r}; choose one of {', '.join(presets)}")
    known = {f.name for f in fields(cls)}
    if unknown := sorted(set(overrides) - known):
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}; fields are {', '.join(sorted(known))}")
    return cls(**{**presets[name], **overrides})
