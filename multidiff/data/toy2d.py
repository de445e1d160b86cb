"""Toy 2-D point clouds: two moons, a two-armed spiral, eight Gaussians, a checkerboard.

``make_toy2d(name, n, seed)`` returns ``{"x": (n, 2) float32, "label": (n,) int64}``;
the label says which moon / arm / mode / square a point came from. The same
``(name, n, seed)`` always gives the same points.

Every set is centred and scaled to unit overall standard deviation
(``mean(x.var(0)) == 1``) by one fixed affine map per dataset, measured once on
a large reference draw, so all draws of a dataset share the same map and a
model may assume ``sigma_data = 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Callable

import torch

Tensor = torch.Tensor


def _moons(n: int, g: torch.Generator, noise: float = 0.1) -> tuple[Tensor, Tensor]:
    """Two interleaving half circles of radius 1 (upper and lower moon), plus Gaussian noise."""
    label = torch.randint(0, 2, (n,), generator=g)
    theta = math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    upper = torch.stack([theta.cos(), theta.sin()], dim=1)  # (n, 2)
    lower = torch.stack([1 - theta.cos(), 0.5 - theta.sin()], dim=1)
    x = torch.where(label[:, None] == 0, upper, lower)
    return x + noise * torch.randn(n, 2, generator=g, dtype=torch.float64), label


def _spiral(n: int, g: torch.Generator, turns: float = 1.5, noise: float = 0.03) -> tuple[Tensor, Tensor]:
    """Two interleaved Archimedean arms ``r = theta / (2 pi turns)``, r in [0, 1].

    ``t = sqrt(u)`` makes points uniform in arc length (which grows like r^2)."""
    label = torch.randint(0, 2, (n,), generator=g)
    r = torch.rand(n, generator=g, dtype=torch.float64).sqrt()
    theta = 2 * math.pi * turns * r + math.pi * label  # the second arm is the first turned by pi
    x = r[:, None] * torch.stack([theta.cos(), theta.sin()], dim=1)
    return x + noise * torch.randn(n, 2, generator=g, dtype=torch.float64), label


def _eight_gaussians(n: int, g: torch.Generator, std: float = 0.05) -> tuple[Tensor, Tensor]:
    """Eight equal Gaussians of std ``std`` centred on the unit circle."""
    label = torch.randint(0, 8, (n,), generator=g)
    angle = label.double() * (2 * math.pi / 8)
    centres = torch.stack([angle.cos(), angle.sin()], dim=1)
    return centres + std * torch.randn(n, 2, generator=g, dtype=torch.float64), label


def _checkerboard(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Uniform on the 8 dark squares of a 4 x 4 board of unit squares over [-2, 2]^2."""
    label = torch.randint(0, 8, (n,), generator=g)
    row = label // 2
    col = 2 * (label % 2) + row % 2  # dark squares: (row + col) even
    corner = torch.stack([col, row], dim=1).double() - 2.0
    return corner + torch.rand(n, 2, generator=g, dtype=torch.float64), label


@dataclass(frozen=True)
class Toy2D:
    generate: Callable[[int, torch.Generator], tuple[Tensor, Tensor]]
    num_classes: int
    description: str


TOY2D: dict[str, Toy2D] = {
    "moons": Toy2D(_moons, 2, "two interleaving half circles (noise 0.1)"),
    "spiral": Toy2D(_spiral, 2, "two-armed spiral, 1.5 turns (noise 0.03)"),
    "8gaussians": Toy2D(_eight_gaussians, 8, "eight Gaussians on a circle (std 0.05)"),
    "checkerboard": Toy2D(_checkerboard, 8, "uniform on the dark squares of a 4x4 board"),
}

_REFERENCE_SIZE = 1 << 17  # the normalisation's sampling error is ~ 1/sqrt(size) = 0.3%


def _get(name: str) -> Toy2D:
    if name not in TOY2D:
        raise ValueError(f"unknown toy 2-D dataset {name!r}; choose one of: {', '.join(TOY2D)}")
    return TOY2D[name]


@cache
def normalisation(name: str) -> tuple[Tensor, float]:
    """The fixed ``(mean (2,), std)`` that maps dataset ``name`` to zero mean, unit overall std."""
    x, _ = _get(name).generate(_REFERENCE_SIZE, torch.Generator().manual_seed(0))
    return x.mean(0), float(x.var(0).mean().sqrt())


def make_toy2d(name: str, n: int, seed: int = 0) -> dict[str, Tensor]:
    """``n`` points of dataset ``name``: ``{"x": (n, 2) float32, "label": (n,) int64}``."""
    dataset = _get(name)
    if n < 1:
        raise ValueError(f"number of points must be >= 1, got {n}")
    x, label = dataset.generate(n, torch.Generator().manual_seed(seed))
    mean, std = normalisation(name)
    return {"x": ((x - mean) / std).float(), "label": label}
