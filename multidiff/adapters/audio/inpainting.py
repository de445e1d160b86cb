"""Time inpainting of spectrograms: known-frame masks (named tasks and the
random masks a mask-aware model trains on), the conditioning signal such a
model reads, the sampling call, and the measures and baselines a fill is
judged by.

A *mask-aware* denoiser reads ``context_signal(known, mask)`` (the known
frames, zero where hidden, and the mask itself) as extra input channels,
``cond["image"]``. It is trained on :func:`random_masks`: a share of examples
with nothing known (plain generation) and the rest with a gap or a
continuation to fill, so one network both generates and inpaints, and an
inpainting fill sees the frames around it instead of only being pushed back
onto them by replacement.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...core.inpainting import sample_inpaint
from ...core.samplers import DEFAULT_METHOD
from .spectrogram import SpectrogramConfig


def frame_mask(batch: int, spec: SpectrogramConfig, *, known: tuple[int, int] | list[tuple[int, int]]) -> Tensor:
    """Known-frame mask ``(batch, 1, 1, frames)``: 1 on the frame ranges ``[start, stop)`` in
    ``known`` (one pair or a list of pairs), 0 elsewhere. Broadcasts over the frequency axis."""
    ranges = [known] if isinstance(known, tuple) else list(known)
    mask = torch.zeros(batch, 1, 1, spec.frames)
    for start, stop in ranges:
        if not 0 <= start < stop <= spec.frames:
            raise ValueError(f"frame range [{start}, {stop}) must lie within [0, {spec.frames})")
        mask[..., start:stop] = 1
    return mask


INPAINT_TASKS = ("continue", "gap")


def task_mask(batch: int, spec: SpectrogramConfig, task: str) -> Tensor:
    """The mask of a named time-inpainting task: ``continue`` keeps the first half of the frames
    and generates the second; ``gap`` keeps the first and last third and fills the middle."""
    if task == "continue":
        return frame_mask(batch, spec, known=(0, spec.frames // 2))
    if task == "gap":
        third = spec.frames // 3
        return frame_mask(batch, spec, known=[(0, third), (spec.frames - third, spec.frames)])
    raise ValueError(f"unknown audio inpainting task {task!r}; choose one of: {', '.join(INPAINT_TASKS)}")


def gap_mask(batch: int, spec: SpectrogramConfig, seconds: float) -> Tensor:
    """A centred gap of ``seconds`` (rounded to whole frames, at least one) to fill, the rest known."""
    width = min(spec.frames - 2, max(1, round(seconds * spec.sample_rate / spec.hop_length)))
    start = (spec.frames - width) // 2
    return frame_mask(batch, spec, known=[(0, start), (start + width, spec.frames)])


def random_masks(batch: int, spec: SpectrogramConfig, *, generator: torch.Generator, empty: float = 0.5,
                 gap_seconds: tuple[float, float] = (0.05, 0.3), device=None) -> Tensor:
    """Training masks ``(batch, 1, 1, frames)`` for a mask-aware model, from ``generator``: with
    probability ``empty`` nothing is known (all 0: plain generation); otherwise, evenly, a gap of
    ``gap_seconds`` (whole frames, uniform) at a uniform position, or a continuation that keeps the
    first quarter to three quarters of the frames."""
    frames = spec.frames
    shortest = max(1, round(gap_seconds[0] * spec.sample_rate / spec.hop_length))
    longest = min(frames - 2, max(shortest, round(gap_seconds[1] * spec.sample_rate / spec.hop_length)))
    u = torch.rand(batch, 4, generator=generator, device=generator.device).to(device)
    t = torch.arange(frames, device=device)[None]  # (1, T)
    width = shortest + (u[:, 1] * (longest - shortest + 1)).long().clamp_max(longest - shortest)  # (B,)
    start = (u[:, 2] * (frames - width + 1)).long().clamp_max(frames - width)
    gap = ~((t >= start[:, None]) & (t < (start + width)[:, None]))  # known outside the gap
    keep = frames // 4 + (u[:, 3] * (frames // 2 + 1)).long().clamp_max(frames // 2)
    head = t < keep[:, None]  # continuation: the first `keep` frames known
    kind_gap = u[:, 0] < empty + (1 - empty) / 2
    known = torch.where(kind_gap[:, None], gap, head) & (u[:, 0] >= empty)[:, None]
    return known.float()[:, None, None, :]


CONTEXT_FILLS = ("zero", "line")  # what context_signal puts in the hidden frames


def context_signal(known: Tensor, mask: Tensor, fill: str = "zero") -> Tensor:
    """What a mask-aware denoiser reads beside ``x``: ``(B, 2, F, T)``, the known frames and the mask
    broadcast over frequency. ``known (B, 1, F, T)``, ``mask (B, 1, 1, T)``. The hidden frames hold 0
    (``fill="zero"``) or the straight line across them (``"line"``, :func:`interpolate_frames`): a first
    guess the network can refine, where 0 leaves it to find the frames around the gap itself."""
    if fill not in CONTEXT_FILLS:
        raise ValueError(f"unknown context fill {fill!r}; choose one of: {', '.join(CONTEXT_FILLS)}")
    full = torch.broadcast_to(mask.to(known), known.shape)
    if fill == "line":
        return torch.cat([interpolate_frames(known, mask).to(known), full], dim=1)
    return torch.cat([known * full, full], dim=1)


def inpaint_frames(denoiser, known: Tensor, mask: Tensor, sigmas: Tensor, *, method: str = DEFAULT_METHOD,
                   cond=None, generator: torch.Generator | None = None, **options) -> Tensor:
    """Generate the frames where ``mask == 0`` of model-space spectrograms ``known (B, 1, F, T)``
    with any sampler; the known frames come back exactly."""
    if known.ndim != 4:
        raise ValueError(f"known must be model-space spectrograms (B, 1, bins, frames), got "
                         f"{tuple(known.shape)}")
    return sample_inpaint(denoiser, known, mask, sigmas, method=method, cond=cond, generator=generator, **options)


# ---------------------------------------------------------------- baselines and measures


def silence_fill(known: Tensor, mask: Tensor) -> Tensor:
    """The hidden frames left silent (-1, the floor), the known ones kept."""
    mask = torch.broadcast_to(mask.to(known), known.shape)
    return mask * known + (1 - mask) * -1.0


def interpolate_frames(known: Tensor, mask: Tensor) -> Tensor:
    """Each bin drawn as a straight line across every hidden run, from the last known frame before
    it to the first known frame after it. A run that reaches the clip's edge is drawn to silence
    (-1) at the edge (the clips are padded with silence at the end). ``known (B, 1, F, T)``,
    ``mask (B, 1, 1, T)`` (the same mask for every bin)."""
    frames = known.shape[-1]
    flags = mask.reshape(mask.shape[0], -1) > 0  # (B, T)
    t = torch.arange(frames, device=known.device).expand_as(flags)
    left = torch.where(flags, t, -1).cummax(1).values  # the last known frame at or before t; -1: the edge
    right = torch.where(flags, t, frames).flip(1).cummin(1).values.flip(1)  # the first at or after; T: the edge
    w = (t - left).double() / (right - left).double()  # (B, T): how far along its run
    edge = torch.full_like(known[..., :1], -1.0, dtype=torch.float32)
    padded = torch.cat([known.float(), edge, edge], dim=-1)  # frame T and T + 1 (for -1): silence

    def at(index: Tensor) -> Tensor:
        index = torch.where(index >= 0, index, frames + 1)[:, None, None, :]
        return torch.gather(padded, -1, torch.broadcast_to(index, padded.shape[:-1] + (frames,)))

    line = (1 - w).float()[:, None, None, :] * at(left) + w.float()[:, None, None, :] * at(right)
    return torch.where(torch.broadcast_to(flags[:, None, None, :], line.shape), known.float(), line)


def hidden_rms(estimate: Tensor, reference: Tensor, mask: Tensor) -> Tensor:
    """RMS difference per clip ``(B,)`` in model units over the hidden entries (mask 0)."""
    hidden = torch.broadcast_to(mask.to(reference) == 0, reference.shape).float()
    squared = ((estimate.float() - reference.float()) ** 2 * hidden).flatten(1).sum(1)
    return (squared / hidden.flatten(1).sum(1).clamp_min(1)).sqrt()


def hidden_lsd(estimate: Tensor, reference: Tensor, mask: Tensor, spec: SpectrogramConfig) -> Tensor:
    """Log-spectral distance in dB per clip ``(B,)`` inside the hidden frames: the RMS over
    frequency of the dB difference (model units times ``(db_ceiling - db_floor) / 2``, so both
    are floored at ``db_floor``), averaged over the hidden frames."""
    scale = (spec.db_ceiling - spec.db_floor) / 2
    per_frame = ((estimate.float() - reference.float()) * scale).pow(2).mean(2).sqrt()[:, 0]  # (B, T)
    hidden = (mask.reshape(mask.shape[0], -1) == 0).float()  # (B, T)
    return (per_frame * hidden).sum(1) / hidden.sum(1).clamp_min(1)
