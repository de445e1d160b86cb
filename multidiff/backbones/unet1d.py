"""A 1-D (temporal) U-Net over a sequence axis, in the form of Diffuser's
temporal U-Net (Janner et al. 2022, Sec. 3.2 and App. C): convolutions only
along time, features as channels, so it sees every feature of a time step at
once and is equivariant in time.

* ``x_in`` is ``(B, C, T)``; or ``(B, C1, C2, T)`` with ``in_channels = C1 * C2``
  (a spectrogram ``(B, 1, n_mels, frames)`` is a sequence of mel frames with
  the mel bins as channels, like DiffSinger's denoiser), folded into
  channels on the way in and unfolded on the way out;
* residual blocks ``GroupNorm -> Mish -> conv(k) -> FiLM -> GroupNorm -> Mish
  -> conv(k)``, FiLM (Perez et al. 2018) by the noise (+ class) embedding;
* ``len(channel_mults)`` levels, the length halved between them (stride-2
  conv down, nearest doubling + conv up), skip connections across;
* optional self-attention in the middle, over the shortest sequence, for
  context across the whole clip;
* optional conditioning signal on the same time grid (``cond_channels > 0``):
  ``cond["image"]`` ``(B, cond_channels, T)`` (or ``(B, K1, K2, T)``, folded
  the same way) is concatenated to the input channels, as the 2-D U-Net does
  with a conditioning image; the audio recipes give it the known frames and
  their mask, so one model both generates and inpaints;
* optional cross-attention to a token sequence ``cond["context"]`` (``context_dim
  > 0``; text states, with ``cond["context_mask"]``) after the middle blocks
  (``cross_attention="mid"``), also after every residual block of the way up
  (``"up"``) or of both ways (``"all"``, as Stable Diffusion's U-Net attends at
  each resolution), so a token such as a pitch name adds its own features at
  full time resolution,
  and optionally its pooled mean added to the noise embedding
  (``pooled_context``, as Imagen does), so a prompt steers the whole clip;
* the last conv of every residual branch and the output conv start at zero,
  so an untrained model returns 0.

The length ``T`` must be divisible by ``2**(len(channel_mults) - 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from .attention import Attention
from .conditioning import noise_input, pooled_context, split_cond
from .config import check_dropout, check_non_negative, check_positive, freeze_ints, from_preset
from .embeddings import NOISE_EMBEDDINGS, ConditioningEmbedding
from .layers import group_norm, zero_init


@dataclass(frozen=True)
class UNet1DConfig:
    in_channels: int = 2  # features per time step (folded: C1 * C2)
    out_channels: int | None = None  # None: same as in_channels
    length: int = 32  # the sequence length T it is built for
    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 4)  # one level per entry
    # channels of the input conv and the first (full-length) level, which the output conv reads; 0: base_channels
    # (the level: base_channels * channel_mults[0]). Per time step the output reaches at most this many
    # directions, so with more features than that the noise a denoiser's skip lets through stays in the rest
    top_channels: int = 0
    num_res_blocks: int = 1  # per level going down (one more going up)
    kernel_size: int = 5
    io_kernel_size: int = 0  # kernel of the input and output convolutions; 0: kernel_size (1: per-frame projections)
    mid_attention: bool = False
    num_heads: int = 4
    dropout: float = 0.0
    num_classes: int = 0  # 0: no class embedding; label num_classes is the null class
    cond_channels: int = 0  # channels of cond["image"] (folded), concatenated to the input
    context_dim: int = 0  # 0: no cross-attention; else the width Dc of cond["context"]
    pooled_context: bool = False  # also add the mean of the context's tokens to the noise embedding (Imagen)
    cross_attention: str = "mid"  # where the context is attended: "mid", "up" (+ every up block), "all" (+ every block)
    context_proj: int = 0  # > 0: one linear map of the context to this width, shared by every cross-attention
    embedding: str = "fourier"
    fourier_scale: float = 1.0
    norm_groups: int = 8

    def __post_init__(self):
        check_positive(self, "in_channels", "length", "base_channels", "num_res_blocks", "kernel_size", "num_heads",
                       "norm_groups")
        check_non_negative(self, "num_classes", "cond_channels", "io_kernel_size", "context_dim", "context_proj",
                           "top_channels")
        check_dropout(self)
        if self.out_channels is not None:
            check_positive(self, "out_channels")
        if self.base_channels % 2:
            raise ValueError(f"UNet1DConfig.base_channels must be even, got {self.base_channels}")
        if self.io_kernel_size and self.io_kernel_size % 2 == 0:
            raise ValueError(f"UNet1DConfig.io_kernel_size must be odd (or 0), got {self.io_kernel_size}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"UNet1DConfig.kernel_size must be odd (same-length convolutions), got "
                             f"{self.kernel_size}")
        if self.embedding not in NOISE_EMBEDDINGS:
            raise ValueError(f"unknown noise embedding {self.embedding!r}; choose one of {sorted(NOISE_EMBEDDINGS)}")
        mults = freeze_ints(self, "channel_mults")
        if not mults or min(mults) < 1:
            raise ValueError(f"UNet1DConfig.channel_mults must be a non-empty sequence of positive ints, got {mults}")
        factor = 2 ** (len(mults) - 1)
        if self.length % factor:
            raise ValueError(f"length {self.length} is not divisible by 2**(len(channel_mults) - 1) = {factor}; use "
                             f"fewer levels or pad the sequence")
        if self.cross_attention not in CROSS_ATTENTION:
            raise ValueError(f"UNet1DConfig.cross_attention must be one of {CROSS_ATTENTION}, got "
                             f"{self.cross_attention!r}")
        if self.cross_attention != "mid" and self.context_dim:
            for width in self.level_channels:
                if width % self.num_heads:
                    raise ValueError(f"cross-attention over {width} channels cannot be split "
                                     f"into num_heads={self.num_heads} heads")
        if self.context_proj and not self.context_dim:
            raise ValueError("UNet1DConfig.context_proj needs a context (context_dim > 0)")
        if self.pooled_context and not self.context_dim:
            raise ValueError("UNet1DConfig.pooled_context needs a context (context_dim > 0)")
        if (self.mid_attention or self.context_dim) and self.level_channels[-1] % self.num_heads:
            raise ValueError(f"mid attention over {self.level_channels[-1]} channels cannot be split into "
                             f"num_heads={self.num_heads} heads")

    @property
    def output_channels(self) -> int:
        return self.in_channels if self.out_channels is None else self.out_channels

    @property
    def level_channels(self) -> tuple[int, ...]:
        """The width of each level, first (full length) to last."""
        widths = [self.base_channels * mult for mult in self.channel_mults]
        if self.top_channels:
            widths[0] = self.top_channels
        return tuple(widths)

    @classmethod
    def preset(cls, name: str, **overrides) -> "UNet1DConfig":
        return from_preset(cls, UNET1D_PRESETS, name, overrides)


CROSS_ATTENTION = ("mid", "up", "all")  # UNet1DConfig.cross_attention: where the context is attended

UNET1D_PRESETS: dict[str, dict] = {
    "tiny": dict(base_channels=16, channel_mults=(1, 2), num_res_blocks=1),
    # CPU recipes: spoken digits (32 mels x 48 frames, 2.9M parameters; spoken_digits: 96 mels, mask-aware,
    # top_channels 96, 3.2M)
    "small": dict(base_channels=64, channel_mults=(1, 2, 2), num_res_blocks=1, mid_attention=True),
    # CPU recipes with more channels in: notes (64 mels x 32 frames, 6.5M parameters)
    "medium": dict(base_channels=64, channel_mults=(1, 2, 4), num_res_blocks=1, mid_attention=True),
    # Diffuser's Maze2D model: dim 32, mults (1, 2, 4, 8)
    "base": dict(base_channels=128, channel_mults=(1, 2, 4, 4), num_res_blocks=2, mid_attention=True, dropout=0.1),
}



class ResBlock1D(nn.Module):
    """``skip(x) + conv2(drop(mish(film(norm2(conv1(mish(norm1(x))))))))`` along time."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, config: UNet1DConfig):
        super().__init__()
        k, groups = config.kernel_size, config.norm_groups
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv1d(in_channels, out_channels, k, padding=k // 2)
        self.film = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = group_norm(out_channels, groups)
        self.drop = nn.Dropout(config.dropout)
        self.conv2 = zero_init(nn.Conv1d(out_channels, out_channels, k, padding=k // 2))
        self.skip = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.mish(self.norm1(x)))  # (B, C_out, T)
        scale, shift = self.film(emb)[:, :, None].chunk(2, dim=1)  # (B, C_out, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.drop(F.mish(h)))


class MidAttention(nn.Module):
    """Pre-norm residual self-attention over the time steps."""

    def __init__(self, channels: int, config: UNet1DConfig):
        super().__init__()
        self.norm = group_norm(channels, config.norm_groups)
        self.attn = Attention(channels, config.num_heads)
        zero_init(self.attn.proj)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        tokens = rearrange(self.norm(h), "b c t -> b t c")
        return h + rearrange(self.attn(tokens), "b t c -> b c t")


class MidCrossAttention(nn.Module):
    """Pre-norm residual cross-attention of the time steps to a context sequence (a learned null
    token always present, so an empty context is well defined); in the middle, and with
    ``cross_attention="up"`` / ``"all"`` after residual blocks too."""

    def __init__(self, channels: int, config: UNet1DConfig):
        super().__init__()
        self.norm = group_norm(channels, config.norm_groups)
        self.attn = Attention(channels, config.num_heads, config.context_proj or config.context_dim, null_token=True)
        zero_init(self.attn.proj)

    def forward(self, h: torch.Tensor, context: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        tokens = rearrange(self.norm(h), "b c t -> b t c")
        return h + rearrange(self.attn(tokens, context, mask), "b t c -> b c t")


class UNet1D(nn.Module):
    """``forward(x_in (B, C, T) or (B, C1, C2, T), c_noise (B,), cond=None) -> same shape``
    (``out_channels`` replaces the channel count when set)."""

    config_class = UNet1DConfig

    def __init__(self, config: UNet1DConfig = UNet1DConfig()):
        super().__init__()
        self.config = config
        base, mults, widths = config.base_channels, config.channel_mults, config.level_channels
        emb_dim = 4 * base
        self.embed = ConditioningEmbedding(config.embedding, base, emb_dim, config.num_classes, config.fourier_scale)
        self.pool = nn.Linear(config.context_dim, emb_dim) if config.pooled_context else None
        k = config.kernel_size
        io = config.io_kernel_size or k
        first = config.top_channels or base  # the input conv's width
        self.conv_in = nn.Conv1d(config.in_channels + config.cond_channels, first, io, padding=io // 2)
        channels, skip_channels = first, [first]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        for level, width in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(config.num_res_blocks):
                blocks.append(ResBlock1D(channels, width, emb_dim, config))
                channels = width
                skip_channels.append(channels)
            self.down.append(blocks)
            if level < len(mults) - 1:
                self.downsample.append(nn.Conv1d(channels, channels, 3, stride=2, padding=1))
                skip_channels.append(channels)
        self.mid1 = ResBlock1D(channels, channels, emb_dim, config)
        self.mid_attn = MidAttention(channels, config) if config.mid_attention else None
        self.mid_cross = MidCrossAttention(channels, config) if config.context_dim else None
        self.mid2 = ResBlock1D(channels, channels, emb_dim, config)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(len(mults))):
            blocks = nn.ModuleList()
            for _ in range(config.num_res_blocks + 1):
                blocks.append(ResBlock1D(channels + skip_channels.pop(), widths[level], emb_dim, config))
                channels = widths[level]
            self.up.append(blocks)
            if level > 0:
                self.upsample.append(nn.Conv1d(channels, channels, 3, padding=1))
        self.out_norm = group_norm(channels, config.norm_groups)
        self.conv_out = zero_init(nn.Conv1d(channels, config.output_channels, io, padding=io // 2))
        # the context's one projection, shared by every cross-attention (the pooled prompt reads it unprojected)
        self.context_proj = nn.Linear(config.context_dim, config.context_proj) if config.context_proj else None
        self.block_cross = None  # cross-attention after each residual block, in the order forward runs them
        if config.context_dim and config.cross_attention != "mid":
            attended = [widths[level] for level in reversed(range(len(mults)))
                        for _ in range(config.num_res_blocks + 1)]  # the way up
            if config.cross_attention == "all":  # the way down runs first
                attended = [width for width in widths for _ in range(config.num_res_blocks)] + attended
            self.block_cross = nn.ModuleList(MidCrossAttention(width, config) for width in attended)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def _fold(self, x_in: torch.Tensor) -> torch.Tensor:
        config = self.config
        if x_in.ndim == 4:
            x_in = x_in.flatten(1, 2)  # (B, C1 C2, T)
        if x_in.ndim != 3 or x_in.shape[1] != config.in_channels or x_in.shape[2] != config.length:
            raise ValueError(f"UNet1D expects x of shape (B, {config.in_channels}, {config.length}) (or (B, C1, C2, "
                             f"{config.length}) with C1 C2 = {config.in_channels}), got {tuple(x_in.shape)}")
        return x_in

    def _signal(self, cond, x: torch.Tensor):
        """``cond`` less its ``image`` (the conditioning signal), and that signal folded to ``(B, K, T)``."""
        image = cond.get("image") if isinstance(cond, dict) else None
        channels = self.config.cond_channels
        if image is None:
            if channels:
                raise ValueError(f"this UNet1D is conditioned on a signal (cond_channels={channels}); pass "
                                 f"cond={{'image': (B, {channels}, {self.config.length}), ...}}")
            return cond, None
        if not channels:
            raise ValueError("this UNet1D takes no conditioning signal (cond_channels=0) but got cond['image']; "
                             "build it with cond_channels > 0")
        signal = image.flatten(1, 2) if image.ndim == 4 else image
        if signal.ndim != 3 or tuple(signal.shape) != (x.shape[0], channels, x.shape[2]):
            raise ValueError(f"cond['image'] must have shape ({x.shape[0]}, {channels}, {x.shape[2]}) (or 4-D, "
                             f"folded to it), got {tuple(image.shape)}")
        return {key: value for key, value in cond.items() if key != "image"}, signal.to(x)

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, cond=None) -> torch.Tensor:
        shape = x_in.shape
        x = self._fold(x_in)
        cond, signal = self._signal(cond, x)
        config = self.config
        parts = split_cond(cond, x, num_classes=config.num_classes, context_dim=config.context_dim,
                           cond_channels=0, owner="UNet1D")
        emb = self.embed(noise_input(c_noise, x.shape[0]).to(x.device), parts.labels)  # (B, 4 base)
        if self.pool is not None:
            emb = emb + self.pool(pooled_context(parts.context, parts.context_mask, x.shape[0], config.context_dim,
                                                 emb))
        emb = F.mish(emb)
        h = self.conv_in(x if signal is None else torch.cat([x, signal], dim=1))  # (B, top_channels or base, T)
        skips = [h]
        cross = iter(self.block_cross) if self.block_cross is not None else None
        context = parts.context
        if self.context_proj is not None and context is not None:
            context = self.context_proj(context.to(x.dtype))  # (B, L, context_proj)

        def attend(h: torch.Tensor, down: bool = False) -> torch.Tensor:
            if cross is None or (down and self.config.cross_attention != "all"):
                return h
            return next(cross)(h, context, parts.context_mask)

        for level, blocks in enumerate(self.down):
            for block in blocks:
                h = attend(block(h, emb), down=True)
                skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
                skips.append(h)
        h = self.mid1(h, emb)
        if self.mid_attn is not None:
            h = self.mid_attn(h)
        if self.mid_cross is not None:
            h = self.mid_cross(h, context, parts.context_mask)
        h = self.mid2(h, emb)
        for index, blocks in enumerate(self.up):
            for block in blocks:
                h = attend(block(torch.cat([h, skips.pop()], dim=1), emb))
            if index < len(self.upsample):
                h = self.upsample[index](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.conv_out(F.mish(self.out_norm(h)))  # (B, out_channels, T)
        if len(shape) == 4 and self.config.out_channels is None:
            out = out.reshape(shape)
        return out


__all__ = ["CROSS_ATTENTION", "UNET1D_PRESETS", "UNet1D", "UNet1DConfig"]
