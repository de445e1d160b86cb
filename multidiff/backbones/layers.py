"""Small layers the convolutional backbones share."""

from __future__ import annotations

import math

from torch import nn


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with ``gcd(groups, channels)`` groups, so any channel count works."""
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero every parameter of ``module`` (a residual branch then starts as the identity)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module
