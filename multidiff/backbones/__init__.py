"""Backbones (layer 1): ``nn.Module``s ``forward(x_in, c_noise, cond=None)`` that
know nothing about what sigma means. Each has a frozen dataclass config
(``config_class``, kept as ``.config``) so it can be rebuilt from JSON."""

from __future__ import annotations

from dataclasses import asdict

from torch import nn

from .dit import DiT, DiTConfig
from .mlp import MLP, MLPConfig
from .transformer1d import Transformer1D, Transformer1DConfig
from .unet1d import UNet1D, UNet1DConfig
from .unet2d import UNet2D, UNet2DConfig

BACKBONES: dict[str, type[nn.Module]] = {"mlp": MLP, "unet1d": UNet1D, "unet2d": UNet2D, "dit": DiT,
                                       "transformer1d": Transformer1D}


def backbone_to_config(backbone: nn.Module) -> dict:
    """``{"name": ..., **config fields}`` for a registered backbone."""
    for name, cls in BACKBONES.items():
        if type(backbone) is cls:
            return {"name": name, **asdict(backbone.config)}
    raise ValueError(f"{type(backbone).__name__} is not a registered backbone; add it to "
                     f"multidiff.backbones.BACKBONES ({', '.join(BACKBONES)})")


def backbone_from_config(config: dict) -> nn.Module:
    """Rebuild a backbone from :func:`backbone_to_config` output."""
    config = dict(config)
    name = config.pop("name", None)
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    cls = BACKBONES[name]
    try:
        return cls(cls.config_class(**config))
    except TypeError as err:  # an unknown or missing field
        raise ValueError(f"bad {name} backbone config {config}: {err}") from None


__all__ = ["BACKBONES", "DiT", "DiTConfig", "MLP", "MLPConfig", "Transformer1D", "Transformer1DConfig", "UNet1D", "UNet1DConfig", "UNet2D", "UNet2DConfig", "backbone_from_config",
           "backbone_to_config"]
