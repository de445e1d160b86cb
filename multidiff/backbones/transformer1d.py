"""A sequence transformer with adaLN-Zero: DiT's blocks (Peebles & Xie 2023) in 1-D,
for sequences ``(B, L, C)`` (text embeddings, trajectories, any channels-last sequence).

========================  ===================================================
``L``                     ``length``, the sequence length it is built for
``C``                     ``in_channels``, features per position (embedding dim)
``D``                     ``hidden_size``, the token width inside
``c``                     the conditioning vector: noise embedding + class embedding
========================  ===================================================

Layout: a linear map ``C -> D`` per position (an up-projection, as Diffusion-LM's
``input_up_proj``), a position embedding (learned, as BERT and Diffusion-LM, or
fixed sin-cos), ``depth`` :class:`~multidiff.backbones.dit.DiTBlock` s with
adaLN-Zero (and optional cross-attention to ``cond["context"]``), a final adaLN
and a linear map ``D -> C_out``. The final layer and every modulation start at
zero, so an untrained model returns 0 and each block starts as the identity.

``vocab_size > 0`` also gives the module a token table ``token_embedding``
``(vocab_size, in_channels)``: the table a token domain diffuses over, learned
with the denoiser (Diffusion-LM's end-to-end training) and saved with its
weights. ``forward`` never reads it; the domain's adapter does (embedding
tokens, rounding, clamping). ``extra_channels`` widens the input beyond
``in_channels`` (the features are concatenated per position before the
up-projection): self-conditioning feeds the previous x0 estimate there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .conditioning import noise_input, split_cond
from .config import check_dropout, check_non_negative, check_positive, from_preset
from .dit import DiTBlock, modulate
from .embeddings import NOISE_EMBEDDINGS, ConditioningEmbedding, sinusoidal_embedding

POSITIONS = ("learned", "sincos")


@dataclass(frozen=True)
class Transformer1DConfig:
    in_channels: int = 32  # features per position
    out_channels: int | None = None  # None: same as in_channels
    length: int = 16  # the sequence length L it is built for
    hidden_size: int = 256
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0  # on the MLP's hidden layer
    num_classes: int = 0  # 0: no class embedding; label num_classes is the null class
    context_dim: int = 0  # 0: no cross-attention; else the width Dc of cond["context"]
    positions: str = "learned"  # "learned" or "sincos"
    embedding: str = "fourier"  # "fourier" for c_noise of order one, "positional" for DDPM timesteps
    fourier_scale: float = 1.0
    vocab_size: int = 0  # > 0: carry a token table (vocab_size, in_channels) for the adapter
    extra_channels: int = 0  # input features per position beyond in_channels (self-conditioning's x0 estimate)

    def __post_init__(self):
        check_positive(self, "in_channels", "length", "hidden_size", "depth", "num_heads")
        check_non_negative(self, "num_classes", "context_dim", "vocab_size", "extra_channels")
        check_dropout(self)
        if self.out_channels is not None:
            check_positive(self, "out_channels")
        if self.embedding not in NOISE_EMBEDDINGS:
            raise ValueError(f"unknown noise embedding {self.embedding!r}; choose one of {sorted(NOISE_EMBEDDINGS)}")
        if self.positions not in POSITIONS:
            raise ValueError(f"unknown position embedding {self.positions!r}; choose one of {POSITIONS}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"Transformer1DConfig.hidden_size={self.hidden_size} is not divisible by num_heads="
                             f"{self.num_heads}")
        if self.positions == "sincos" and self.hidden_size % 2:
            raise ValueError(f"sin-cos positions need an even hidden_size, got {self.hidden_size}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"Transformer1DConfig.mlp_ratio must be > 0, got {self.mlp_ratio}")

    @property
    def output_channels(self) -> int:
        return self.in_channels if self.out_channels is None else self.out_channels

    @classmethod
    def preset(cls, name: str, **overrides) -> Transformer1DConfig:
        """A named size (:data:`TRANSFORMER1D_PRESETS`) with ``overrides`` (``in_channels``, ``length`` ...)."""
        return from_preset(cls, TRANSFORMER1D_PRESETS, name, overrides)


TRANSFORMER1D_PRESETS: dict[str, dict] = {
    "tiny": dict(hidden_size=64, depth=2, num_heads=2),  # tests
    "small": dict(hidden_size=256, depth=6, num_heads=4),  # CPU recipes (~7.4M)
    "base": dict(hidden_size=512, depth=12, num_heads=8),  # one GPU (~58M)
}


class Transformer1D(nn.Module):
    """``forward(x_in (B, L, C), c_noise (B,), cond=None) -> (B, L, out_channels)``."""

    config_class = Transformer1DConfig

    def __init__(self, config: Transformer1DConfig = Transformer1DConfig()):
        super().__init__()
        self.config = config
        dim = config.hidden_size
        self.token_embedding = nn.Embedding(config.vocab_size, config.in_channels) if config.vocab_size else None
        self.input = nn.Sequential(nn.Linear(config.in_channels + config.extra_channels, dim), nn.Tanh(),
                                   nn.Linear(dim, dim))
        if config.positions == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, config.length, dim))
        else:  # fixed, so not saved: rebuilt from the config on load
            positions = sinusoidal_embedding(torch.arange(config.length, dtype=torch.float64), dim)
            self.register_buffer("pos_embed", positions.float()[None], persistent=False)
        self.embed = ConditioningEmbedding(config.embedding, dim, dim, config.num_classes, config.fourier_scale)
        self.blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(dim, 2 * dim)
        self.final = nn.Linear(dim, config.output_channels)
        self._init_weights()

    def _init_weights(self):
        """Xavier-uniform linear layers, N(0, 0.02) learned positions and class table, adaLN-Zero's
        zeros; the token table N(0, 1) (the adapter normalises its rows)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.normal_(self.pos_embed, std=0.02)
        if self.embed.class_embed is not None:
            nn.init.normal_(self.embed.class_embed.weight, std=0.02)
        if self.token_embedding is not None:
            nn.init.normal_(self.token_embedding.weight)
        zeroed = [self.final_modulation, self.final]
        for block in self.blocks:
            zeroed += [block.modulation] + ([block.cross.proj] if block.cross is not None else [])
        for layer in zeroed:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def codebook(self) -> torch.Tensor | None:
        """The token table's weight ``(vocab_size, in_channels)`` (None without one)."""
        return None if self.token_embedding is None else self.token_embedding.weight

    @property
    def null_class(self) -> int:
        """The label that means "no class" (classifier-free guidance's unconditional branch)."""
        return self.config.num_classes

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, cond=None) -> torch.Tensor:
        config = self.config
        channels = config.in_channels + config.extra_channels
        if x_in.ndim != 3 or tuple(x_in.shape[1:]) != (config.length, channels):
            raise ValueError(f"Transformer1D expects x of shape (B, {config.length}, {channels}) "
                             f"(length, in_channels + extra_channels), got {tuple(x_in.shape)}")
        parts = split_cond(cond, x_in, num_classes=config.num_classes, context_dim=config.context_dim,
                           cond_channels=0, owner="Transformer1D")
        c = F.silu(self.embed(noise_input(c_noise, x_in.shape[0]).to(x_in.device), parts.labels))  # (B, D)
        x = self.input(x_in) + self.pos_embed.to(x_in.dtype)  # (B, L, D)
        for block in self.blocks:
            x = block(x, c, parts.context, parts.context_mask)
        shift, scale = self.final_modulation(c)[:, None].chunk(2, dim=2)  # (B, 1, D) each
        return self.final(modulate(self.final_norm(x), shift, scale))  # (B, L, C_out)
