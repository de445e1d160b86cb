"""A 2-D U-Net for images ``(B, C, H, W)`` (Ronneberger et al. 2015), in the form diffusion
models use it (Ho et al. 2020, Sec. 4 and App. B; Dhariwal & Nichol 2021, Sec. 3):

* ``conv_in``, then one *level* per entry of ``channel_mults`` (``base_channels *
  mult`` channels, resolution halved between levels), a middle, and the mirror
  image going up, each up block concatenating the matching down activation
  (skip connection);
* residual blocks ``GroupNorm -> SiLU -> conv -> FiLM -> SiLU -> dropout ->
  conv`` where FiLM (Perez et al. 2018) is the scale-shift
  ``h (1 + scale) + shift`` of the normalised features by a projection of
  the conditioning vector (noise embedding + class embedding);
* multi-head self-attention, and cross-attention to ``cond["context"]``
  when ``context_dim > 0``, at the levels whose feature-map size is in
  ``attention_resolutions`` (and in the middle);
* the last conv of every residual branch, every attention output
  projection and the output conv start at zero, so each block starts as the
  identity and an untrained model returns 0 (its denoiser is ``c_skip * x``).

``cond`` is described in :mod:`multidiff.backbones.conditioning`; a
conditioning image (``cond_channels > 0``) is concatenated to the input
channels, which is how SR3-style super-resolution is conditioned.

A level's *resolution* is its feature-map size ``min(H, W) / 2**level``;
``image_size`` (an int, or ``(H, W)``) must be divisible by
``2**(len(channel_mults) - 1)``, and the model accepts only that size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from .attention import Attention
from .conditioning import check_image_input, concat_image, noise_input, pooled_context, split_cond
from .config import (check_dropout, check_non_negative, check_positive, freeze_image_size, freeze_ints, from_preset,
                     image_hw)
from .embeddings import NOISE_EMBEDDINGS, ConditioningEmbedding
from .layers import group_norm, zero_init


@dataclass(frozen=True)
class UNet2DConfig:
    in_channels: int = 3
    out_channels: int | None = None  # None: same as in_channels
    image_size: int | tuple[int, int] = 32  # an int for square images, or (H, W)
    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 2)  # one level per entry
    num_res_blocks: int = 2  # per level going down (one more going up)
    attention_resolutions: tuple[int, ...] = (16,)  # feature-map sizes that get attention
    mid_attention: bool = True  # attention in the middle as well
    num_heads: int = 4
    dropout: float = 0.0
    num_classes: int = 0  # 0: no class embedding; label num_classes is the null class
    context_dim: int = 0  # 0: no cross-attention; else the width Dc of cond["context"]
    pooled_context: bool = False  # also add the mean of the context's tokens to the noise embedding (Imagen)
    cond_channels: int = 0  # channels of cond["image"], concatenated to the input
    embedding: str = "fourier"  # "fourier" for c_noise of order one, "positional" for DDPM timesteps
    fourier_scale: float = 1.0
    norm_groups: int = 32  # GroupNorm uses gcd(norm_groups, channels) groups

    def __post_init__(self):
        check_positive(self, "in_channels", "base_channels", "num_res_blocks", "num_heads", "norm_groups")
        check_non_negative(self, "num_classes", "context_dim", "cond_channels")
        check_dropout(self)
        if self.out_channels is not None:
            check_positive(self, "out_channels")
        if self.base_channels % 2:
            raise ValueError(f"UNet2DConfig.base_channels must be even (it is the noise embedding's width), got "
                             f"{self.base_channels}")
        if self.embedding not in NOISE_EMBEDDINGS:
            raise ValueError(f"unknown noise embedding {self.embedding!r}; choose one of {sorted(NOISE_EMBEDDINGS)}")
        if self.pooled_context and not self.context_dim:
            raise ValueError("UNet2DConfig.pooled_context needs a context (context_dim > 0)")
        mults = freeze_ints(self, "channel_mults")
        if not mults or min(mults) < 1:
            raise ValueError(f"UNet2DConfig.channel_mults must be a non-empty sequence of positive ints, got {mults}")
        attention = freeze_ints(self, "attention_resolutions")
        height, width = freeze_image_size(self)
        factor = 2 ** (len(mults) - 1)
        if height % factor or width % factor:
            raise ValueError(f"image_size {height}x{width} is not divisible by 2**(len(channel_mults) - 1) = {factor}; "
                             f"use fewer levels in channel_mults or pad the images")
        if unreachable := sorted(set(attention) - set(self.resolutions)):
            raise ValueError(f"attention resolution(s) {unreachable} are not reached: with image_size "
                             f"{height}x{width} and {len(mults)} levels the feature maps are {self.resolutions}")
        needs_heads = [self.base_channels * mults[level] for level in self.attention_levels]
        if self.mid_attention:
            needs_heads.append(self.base_channels * mults[-1])
        if bad := sorted({c for c in needs_heads if c % self.num_heads}):
            raise ValueError(f"attention over {bad} channels cannot be split into num_heads={self.num_heads} heads; "
                             f"choose num_heads dividing {math.gcd(*needs_heads)}")

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Feature-map size of each level (``min(H, W) / 2**level``)."""
        return tuple(min(image_hw(self.image_size)) // 2**level for level in range(len(self.channel_mults)))

    @property
    def attention_levels(self) -> tuple[int, ...]:
        return tuple(level for level, size in enumerate(self.resolutions) if size in self.attention_resolutions)

    @property
    def output_channels(self) -> int:
        return self.in_channels if self.out_channels is None else self.out_channels

    @classmethod
    def preset(cls, name: str, **overrides) -> UNet2DConfig:
        """A named size (:data:`UNET2D_PRESETS`) with ``overrides`` (``image_size``, ``in_channels``,
        ``num_classes`` ...). Presets place attention by level, so it follows ``image_size``."""
        if name in UNET2D_PRESETS and "attention_resolutions" not in overrides:
            size = min(image_hw(overrides.get("image_size", cls.image_size)))
            overrides["attention_resolutions"] = tuple(size // 2**level for level in _PRESET_ATTENTION_LEVELS[name])
        return from_preset(cls, UNET2D_PRESETS, name, overrides)


UNET2D_PRESETS: dict[str, dict] = {
    # CPU tests
    "tiny": dict(base_channels=16, channel_mults=(1, 2), num_res_blocks=1, num_heads=2, norm_groups=8),
    # CPU recipes: 8x8, 16x16, 28x28 images
    "small": dict(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=2, num_heads=4, norm_groups=8),
    # one GPU: 28x28 / 32x32 (DDPM's CIFAR-10 model, one level fewer so 28x28 works)
    "base": dict(base_channels=128, channel_mults=(1, 2, 2), num_res_blocks=3, num_heads=4, dropout=0.1),
}
_PRESET_ATTENTION_LEVELS = {"tiny": (1,), "small": (1,), "base": (1,)}



class ResBlock(nn.Module):
    """``skip(x) + conv2(drop(silu(film(norm2(conv1(silu(norm1(x)))), emb))))``."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = group_norm(out_channels, groups)
        self.drop = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)  # (B, C_out, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.drop(F.silu(h)))


class AttentionBlock(nn.Module):
    """Self-attention over the ``H W`` positions, then cross-attention to the context; pre-norm, residual."""

    def __init__(self, channels: int, num_heads: int, groups: int, context_dim: int):
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.attn = Attention(channels, num_heads)
        zero_init(self.attn.proj)
        self.cross_norm = group_norm(channels, groups) if context_dim else None
        self.cross = Attention(channels, num_heads, context_dim, null_token=True) if context_dim else None
        if self.cross is not None:
            zero_init(self.cross.proj)

    def forward(self, h: torch.Tensor, context: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        height = h.shape[2]
        tokens = rearrange(self.norm(h), "b c h w -> b (h w) c")
        h = h + rearrange(self.attn(tokens), "b (h w) c -> b c h w", h=height)
        if self.cross is not None:
            tokens = rearrange(self.cross_norm(h), "b c h w -> b (h w) c")
            h = h + rearrange(self.cross(tokens, context, mask), "b (h w) c -> b c h w", h=height)
        return h


class Stage(nn.Module):
    """A residual block, followed by attention when ``attention``."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, config: UNet2DConfig, attention: bool):
        super().__init__()
        self.res = ResBlock(in_channels, out_channels, emb_dim, config.dropout, config.norm_groups)
        self.attn = (AttentionBlock(out_channels, config.num_heads, config.norm_groups, config.context_dim)
                     if attention else None)

    def forward(self, h, emb, context, mask):
        h = self.res(h, emb)
        return h if self.attn is None else self.attn(h, context, mask)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, h):
        return self.conv(h)


class Upsample(nn.Module):
    """Nearest-neighbour doubling then a 3x3 conv (no checkerboard artefacts of a strided transpose)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h):
        return self.conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))


class UNet2D(nn.Module):
    """``forward(x_in (B, C, H, W), c_noise (B,), cond=None) -> (B, out_channels, H, W)``."""

    config_class = UNet2DConfig

    def __init__(self, config: UNet2DConfig = UNet2DConfig()):
        super().__init__()
        self.config = config
        base, mults = config.base_channels, config.channel_mults
        emb_dim = 4 * base
        self.embed = ConditioningEmbedding(config.embedding, base, emb_dim, config.num_classes, config.fourier_scale)
        self.pool = nn.Linear(config.context_dim, emb_dim) if config.pooled_context else None
        self.conv_in = nn.Conv2d(config.in_channels + config.cond_channels, base, 3, padding=1)

        attention_levels = set(config.attention_levels)
        channels, skip_channels = base, [base]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        for level, mult in enumerate(mults):
            stages = nn.ModuleList()
            for _ in range(config.num_res_blocks):
                stages.append(Stage(channels, base * mult, emb_dim, config, level in attention_levels))
                channels = base * mult
                skip_channels.append(channels)
            self.down.append(stages)
            if level < len(mults) - 1:
                self.downsample.append(Downsample(channels))
                skip_channels.append(channels)

        self.mid = nn.ModuleList([Stage(channels, channels, emb_dim, config, config.mid_attention),
                                  Stage(channels, channels, emb_dim, config, False)])

        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(len(mults))):
            stages = nn.ModuleList()
            for _ in range(config.num_res_blocks + 1):
                stages.append(Stage(channels + skip_channels.pop(), base * mults[level], emb_dim, config,
                                    level in attention_levels))
                channels = base * mults[level]
            self.up.append(stages)
            if level > 0:
                self.upsample.append(Upsample(channels))

        self.out_norm = group_norm(channels, config.norm_groups)
        self.conv_out = zero_init(nn.Conv2d(channels, config.output_channels, 3, padding=1))

    @property
    def null_class(self) -> int:
        """The label that means "no class" (classifier-free guidance's unconditional branch)."""
        return self.config.num_classes

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, cond=None) -> torch.Tensor:
        config = self.config
        check_image_input(x_in, config.in_channels, image_hw(config.image_size), "UNet2D")
        parts = split_cond(cond, x_in, num_classes=config.num_classes, context_dim=config.context_dim,
                       cond_channels=config.cond_channels, owner="UNet2D")
        emb = self.embed(noise_input(c_noise, x_in.shape[0]).to(x_in.device), parts.labels)  # (B, 4 base)
        if self.pool is not None:
            emb = emb + self.pool(pooled_context(parts.context, parts.context_mask, x_in.shape[0],
                                                 config.context_dim, emb))
        emb = F.silu(emb)

        h = self.conv_in(concat_image(x_in, parts.image))  # (B, base, H, W)
        skips = [h]
        for level, stages in enumerate(self.down):
            for stage in stages:
                h = stage(h, emb, parts.context, parts.context_mask)
                skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
                skips.append(h)
        for stage in self.mid:
            h = stage(h, emb, parts.context, parts.context_mask)
        for index, stages in enumerate(self.up):
            for stage in stages:
                h = stage(torch.cat([h, skips.pop()], dim=1), emb, parts.context, parts.context_mask)
            if index < len(self.upsample):
                h = self.upsample[index](h)
        return self.conv_out(F.silu(self.out_norm(h)))  # (B, out_channels, H, W)
