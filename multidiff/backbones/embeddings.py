"""Embeddings of the backbone's noise input ``c_noise`` (a ``(B,)`` tensor).

Two families, shared by every backbone:

* positional (Vaswani et al. 2017, Sec. 3.5; DDPM's timestep embedding):
  fixed geometric frequencies, suited to a ``c_noise`` in the hundreds, such
  as a DDPM timestep in [0, 999] or rectified flow's ``1000 t``;
* Fourier features (Tancik et al. 2020; EDM's ``fourier`` embedding for VE
  models): fixed random Gaussian frequencies of std ``scale``, suited to a
  ``c_noise`` of order one, such as EDM's ``log(sigma) / 4``.

Both return ``[cos(c_noise f), sin(c_noise f)]`` of width ``dim``.

Also here: :class:`ConditioningEmbedding`, the per-example conditioning
vector (noise embedding through an MLP, plus a class embedding) that the
image backbones add or modulate with, and :func:`sincos_2d_embedding`, the
fixed positions of a grid of patches.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(c_noise: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Positional embedding (Vaswani et al. 2017, Sec. 3.5): ``(B,) -> (B, dim)``,
    frequencies from 1 down to ``1 / max_period``."""
    if dim % 2:
        raise ValueError(f"embedding dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=c_noise.device) / half)
    angles = c_noise.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([angles.cos(), angles.sin()], dim=1)


class PositionalEmbedding(nn.Module):
    """:func:`sinusoidal_embedding` as a module (no parameters)."""

    def __init__(self, dim: int, max_period: float = 10_000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        self.dim, self.max_period = dim, max_period

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        return sinusoidal_embedding(c_noise, self.dim, self.max_period)


class FourierEmbedding(nn.Module):
    """Random Fourier features (Tancik et al. 2020): ``(B,) -> (B, dim)`` with
    frequencies ``2 pi N(0, scale^2)`` drawn once and stored with the weights."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        self.register_buffer("freqs", 2 * math.pi * scale * torch.randn(dim // 2))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        angles = c_noise.float()[:, None] * self.freqs[None]  # (B, dim/2)
        return torch.cat([angles.cos(), angles.sin()], dim=1)


NOISE_EMBEDDINGS = {"positional": PositionalEmbedding, "fourier": FourierEmbedding}


def make_noise_embedding(kind: str, dim: int, **options) -> nn.Module:
    """Build a noise embedding by name (``positional`` or ``fourier``); ``options``
    go to its constructor (``max_period`` or ``scale``)."""
    if kind not in NOISE_EMBEDDINGS:
        raise ValueError(f"unknown noise embedding {kind!r}; choose one of {sorted(NOISE_EMBEDDINGS)}")
    return NOISE_EMBEDDINGS[kind](dim, **options)


class ConditioningEmbedding(nn.Module):
    """``emb = MLP(noise_embedding(c_noise)) + class_embedding(label)``: ``(B,), (B,) -> (B, dim)``.

    ``kind`` and ``fourier_scale`` choose the noise embedding (see the module
    docstring); ``freq_dim`` is its width. With ``num_classes > 0`` the class
    table has ``num_classes + 1`` rows, the last being the null class."""

    def __init__(self, kind: str, freq_dim: int, dim: int, num_classes: int = 0, fourier_scale: float = 1.0):
        super().__init__()
        options = {"scale": fourier_scale} if kind == "fourier" else {}
        self.noise_embed = make_noise_embedding(kind, freq_dim, **options)
        self.noise_mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.class_embed = nn.Embedding(num_classes + 1, dim) if num_classes else None

    def forward(self, c_noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        features = self.noise_embed(c_noise).to(self.noise_mlp[0].weight.dtype)  # (B, freq_dim), float32 before
        emb = self.noise_mlp(features)  # (B, dim)
        if self.class_embed is not None:
            if labels is None:
                raise ValueError("this embedding has a class table; pass labels (the null class for none)")
            emb = emb + self.class_embed(labels)
        return emb


def sincos_2d_embedding(height: int, width: int, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Fixed 2-D positions of a ``height x width`` grid in raster order, ``(H W, dim)``: the first
    half of the channels is :func:`sinusoidal_embedding` of the row, the second half of the column
    (the 2-D sin-cos embedding of MAE, He et al. 2022, used by DiT)."""
    if dim % 4:
        raise ValueError(f"2-D positional embedding dim must be a multiple of 4, got {dim}")
    rows = torch.arange(height, dtype=torch.float32).repeat_interleave(width)  # (H W,)
    cols = torch.arange(width, dtype=torch.float32).repeat(height)  # (H W,)
    return torch.cat([sinusoidal_embedding(rows, dim // 2, max_period),
                      sinusoidal_embedding(cols, dim // 2, max_period)], dim=1)
