"""A residual MLP backbone for vector data ``(B, D)`` (toy 2-D sets, low-dimensional states).

``F(x_in, c_noise, cond)``: the input is lifted to ``width`` features and
passed through ``depth`` pre-norm residual blocks; every block adds a
projection of the conditioning vector (noise embedding, plus a class
embedding when ``num_classes > 0``) inside its hidden layer. The output layer
starts at zero, so an untrained model's denoiser is ``c_skip * x``.

Class labels are integers in ``[0, num_classes)``; label ``num_classes`` is
the null class used for classifier-free guidance (Ho & Salimans 2022), and is
what ``cond=None`` means.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .conditioning import class_labels
from .embeddings import make_noise_embedding


@dataclass(frozen=True)
class MLPConfig:
    dim: int = 2  # features per example
    width: int = 128
    depth: int = 3  # residual blocks
    embed_dim: int = 64  # width of the noise embedding
    embedding: str = "fourier"  # "fourier" for c_noise of order one, "positional" for DDPM timesteps
    fourier_scale: float = 1.0  # std of the Fourier frequencies (per unit of c_noise)
    num_classes: int = 0  # 0: unconditional
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("dim", "width", "depth", "embed_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"MLPConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.embed_dim % 2:
            raise ValueError(f"MLPConfig.embed_dim must be even, got {self.embed_dim}")
        if self.num_classes < 0:
            raise ValueError(f"MLPConfig.num_classes must be >= 0, got {self.num_classes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"MLPConfig.dropout must be in [0, 1), got {self.dropout}")


class ResidualBlock(nn.Module):
    """``h + W2 drop(silu(W1 silu(norm(h)) + E emb))``."""

    def __init__(self, width: int, cond_dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.cond = nn.Linear(cond_dim, width)
        self.fc2 = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        hidden = self.act(self.fc1(self.act(self.norm(h))) + self.cond(emb))  # (B, width)
        return h + self.fc2(self.drop(hidden))


class MLP(nn.Module):
    """Residual MLP backbone ``forward(x_in (B, D), c_noise (B,), cond=None (B,) labels) -> (B, D)``."""

    config_class = MLPConfig

    def __init__(self, config: MLPConfig = MLPConfig()):
        super().__init__()
        self.config = config
        options = {"scale": config.fourier_scale} if config.embedding == "fourier" else {}
        self.noise_embed = make_noise_embedding(config.embedding, config.embed_dim, **options)
        cond_dim = 2 * config.embed_dim
        self.noise_mlp = nn.Sequential(nn.Linear(config.embed_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))
        self.class_embed = nn.Embedding(config.num_classes + 1, cond_dim) if config.num_classes else None
        self.input = nn.Linear(config.dim, config.width)
        self.blocks = nn.ModuleList(ResidualBlock(config.width, cond_dim, config.dropout) for _ in range(config.depth))
        self.out_norm = nn.LayerNorm(config.width)
        self.output = nn.Linear(config.width, config.dim)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    @property
    def null_class(self) -> int:
        """The label that means "no class" (classifier-free guidance's unconditional branch)."""
        return self.config.num_classes

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if x_in.ndim != 2 or x_in.shape[1] != self.config.dim:
            raise ValueError(f"MLP expects x of shape (B, {self.config.dim}), got {tuple(x_in.shape)}")
        emb = self.noise_mlp(self.noise_embed(c_noise.reshape(-1)).to(x_in.dtype))  # (B, 2 embed_dim)
        labels = class_labels(cond, x_in.shape[0], self.config.num_classes, x_in.device, "MLP")
        if labels is not None:
            emb = emb + self.class_embed(labels)
        h = self.input(x_in)  # (B, width)
        for block in self.blocks:
            h = block(h, emb)
        return self.output(nn.functional.silu(self.out_norm(h)))
