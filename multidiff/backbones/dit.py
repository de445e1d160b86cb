"""DiT, the diffusion transformer (Peebles & Xie 2023), for images ``(B, C, H, W)``.

========================  ===================================================
``p``                     ``patch_size``; the image becomes ``(H/p)(W/p)`` tokens
``D``                     ``hidden_size``, the token width
``c``                     the conditioning vector: noise embedding + class embedding
adaLN-Zero (Sec. 3.2)     each block regresses ``(shift, scale, gate)`` for its
                          attention and its MLP from ``c``; ``LN(x) (1 + scale) +
                          shift`` replaces LayerNorm's affine, and the gates
                          start at 0, so every block starts as the identity
========================  ===================================================

Layout: patchify (a ``p x p`` conv of stride ``p``) + fixed 2-D sin-cos
positions, ``depth`` blocks ``x += gate1 attn(mod(LN x)); [x += cross(LN x,
context)]; x += gate2 mlp(mod(LN x))``, a final adaLN + linear to ``p^2 C``
values per token, and unpatchify. The final layer and all modulations start
at zero (an untrained model returns 0), as does the output projection of the
optional cross-attention, which Sec. 3.2 lists as a conditioning variant and
PixArt-alpha (Chen et al. 2023) uses for text.

``image_size`` must be divisible by ``patch_size``: padding would make border
tokens of mostly zeros and a position grid that depends on the pad, so a size
that does not divide is a config error naming the patch sizes that do.
``cond`` is described in :mod:`multidiff.backbones.conditioning`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from .attention import Attention
from .conditioning import check_image_input, concat_image, noise_input, split_cond
from .config import (check_dropout, check_non_negative, check_positive, freeze_image_size, from_preset, image_hw)
from .embeddings import NOISE_EMBEDDINGS, ConditioningEmbedding, sincos_2d_embedding


@dataclass(frozen=True)
class DiTConfig:
    in_channels: int = 3
    out_channels: int | None = None  # None: same as in_channels
    image_size: int | tuple[int, int] = 32  # an int for square images, or (H, W)
    patch_size: int = 2
    hidden_size: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    dropout: float = 0.0  # on the MLP's hidden layer
    num_classes: int = 0  # 0: no class embedding; label num_classes is the null class
    context_dim: int = 0  # 0: no cross-attention; else the width Dc of cond["context"]
    cond_channels: int = 0  # channels of cond["image"], concatenated to the input
    embedding: str = "fourier"  # "fourier" for c_noise of order one, "positional" for DDPM timesteps
    fourier_scale: float = 1.0

    def __post_init__(self):
        check_positive(self, "in_channels", "patch_size", "hidden_size", "depth", "num_heads")
        check_non_negative(self, "num_classes", "context_dim", "cond_channels")
        check_dropout(self)
        if self.out_channels is not None:
            check_positive(self, "out_channels")
        if self.embedding not in NOISE_EMBEDDINGS:
            raise ValueError(f"unknown noise embedding {self.embedding!r}; choose one of {sorted(NOISE_EMBEDDINGS)}")
        if self.hidden_size % 4:
            raise ValueError(f"DiTConfig.hidden_size must be a multiple of 4 (2-D sin-cos positions), got "
                             f"{self.hidden_size}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"DiTConfig.hidden_size={self.hidden_size} is not divisible by num_heads="
                             f"{self.num_heads}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"DiTConfig.mlp_ratio must be > 0, got {self.mlp_ratio}")
        height, width = freeze_image_size(self)
        if height % self.patch_size or width % self.patch_size:
            fits = [p for p in range(1, min(height, width) + 1) if height % p == 0 and width % p == 0]
            raise ValueError(f"image_size {height}x{width} is not divisible by patch_size={self.patch_size}; "
                             f"use one of {fits} (or pad/crop the images)")

    @property
    def grid(self) -> tuple[int, int]:
        """Tokens along H and W."""
        height, width = image_hw(self.image_size)
        return height // self.patch_size, width // self.patch_size

    @property
    def output_channels(self) -> int:
        return self.in_channels if self.out_channels is None else self.out_channels

    @classmethod
    def preset(cls, name: str, **overrides) -> DiTConfig:
        """A named size (:data:`DIT_PRESETS`) with ``overrides`` (``image_size``, ``in_channels`` ...)."""
        return from_preset(cls, DIT_PRESETS, name, overrides)


DIT_PRESETS: dict[str, dict] = {
    "tiny": dict(patch_size=2, hidden_size=64, depth=2, num_heads=2),  # CPU tests
    "small": dict(patch_size=2, hidden_size=128, depth=6, num_heads=4),  # CPU recipes
    "base": dict(patch_size=2, hidden_size=384, depth=12, num_heads=6),  # DiT-S/2: one GPU, 28x28 / 32x32
}


def modulate(h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``h (1 + scale) + shift`` with per-example ``shift, scale (B, 1, D)``."""
    return h * (1 + scale) + shift


class DiTBlock(nn.Module):
    """One transformer block with adaLN-Zero (Peebles & Xie 2023, Fig. 3)."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        dim, hidden = config.hidden_size, int(config.hidden_size * config.mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, config.num_heads)
        self.cross_norm = nn.LayerNorm(dim, eps=1e-6) if config.context_dim else None
        self.cross = (Attention(dim, config.num_heads, config.context_dim, null_token=True)
                      if config.context_dim else None)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Dropout(config.dropout),
                                 nn.Linear(hidden, dim))
        self.modulation = nn.Linear(dim, 6 * dim)

    def forward(self, x, c, context, mask):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c)[:, None].chunk(6, dim=2)  # (B, 1, D) each
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1))
        if self.cross is not None:
            x = x + self.cross(self.cross_norm(x), context, mask)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))  # (B, N, D)


class DiT(nn.Module):
    """``forward(x_in (B, C, H, W), c_noise (B,), cond=None) -> (B, out_channels, H, W)``."""

    config_class = DiTConfig

    def __init__(self, config: DiTConfig = DiTConfig()):
        super().__init__()
        self.config = config
        dim, p = config.hidden_size, config.patch_size
        self.patchify = nn.Conv2d(config.in_channels + config.cond_channels, dim, p, stride=p)
        # fixed, so not saved: rebuilt from the config on load
        self.register_buffer("pos_embed", sincos_2d_embedding(*config.grid, dim)[None], persistent=False)
        self.embed = ConditioningEmbedding(config.embedding, dim, dim, config.num_classes, config.fourier_scale)
        self.blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(dim, 2 * dim)
        self.final = nn.Linear(dim, p * p * config.output_channels)
        self._init_weights()

    def _init_weights(self):
        """Xavier-uniform linear layers and patch embedding, as ViT; adaLN-Zero's zeros on top."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.xavier_uniform_(self.patchify.weight.view(self.config.hidden_size, -1))
        nn.init.zeros_(self.patchify.bias)
        if self.embed.class_embed is not None:
            nn.init.normal_(self.embed.class_embed.weight, std=0.02)
        zeroed = [self.final_modulation, self.final]
        for block in self.blocks:
            zeroed += [block.modulation] + ([block.cross.proj] if block.cross is not None else [])
        for layer in zeroed:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def null_class(self) -> int:
        """The label that means "no class" (classifier-free guidance's unconditional branch)."""
        return self.config.num_classes

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, cond=None) -> torch.Tensor:
        config = self.config
        check_image_input(x_in, config.in_channels, image_hw(config.image_size), "DiT")
        parts = split_cond(cond, x_in, num_classes=config.num_classes, context_dim=config.context_dim,
                           cond_channels=config.cond_channels, owner="DiT")
        c = F.silu(self.embed(noise_input(c_noise, x_in.shape[0]).to(x_in.device), parts.labels))  # (B, D)

        x = rearrange(self.patchify(concat_image(x_in, parts.image)), "b d h w -> b (h w) d")  # (B, N, D)
        x = x + self.pos_embed.to(x.dtype)
        for block in self.blocks:
            x = block(x, c, parts.context, parts.context_mask)
        shift, scale = self.final_modulation(c)[:, None].chunk(2, dim=2)  # (B, 1, D) each
        x = self.final(modulate(self.final_norm(x), shift, scale))  # (B, N, p p C_out)
        grid_h, _ = config.grid
        return rearrange(x, "b (h w) (p q c) -> b c (h p) (w q)", h=grid_h, p=config.patch_size,
                         q=config.patch_size)  # (B, C_out, H, W)
