"""Sampling with part of ``x`` known: every domain's inpainting (image holes,
audio frames, fixed tokens, a trajectory's start and goal) is this one routine
over the core's :class:`~multidiff.core.guidance.Inpaint` wrapper, so it works
with every sampler."""

from __future__ import annotations

import torch

from .guidance import Inpaint
from .samplers import DEFAULT_METHOD, sample
from .utils import randn_like


def sample_inpaint(denoiser, known: torch.Tensor, mask: torch.Tensor, sigmas: torch.Tensor, *,
                   method: str = DEFAULT_METHOD, cond=None, generator: torch.Generator | None = None,
                   reconstruction_scale: float = 0.0, start: torch.Tensor | None = None,
                   **options) -> torch.Tensor:
    """Fill where ``mask == 0`` of model-space ``known`` (any shape ``(B, ...)``).

    Starts from ``sigmas[0]`` noise (or, given ``start`` shaped like ``known``, from ``start``
    plus that noise: a warm start from an earlier draw, with ``sigmas`` the tail of a grid),
    samples with ``denoiser`` wrapped in :class:`Inpaint` (the known values replace the x0 estimate), then pastes
    the known values back so they are bit-exact whatever the sampler's last
    step rounds to. ``mask`` broadcasts against ``known``."""
    if not torch.is_floating_point(known):
        raise ValueError(f"known must hold model-space floats, got {known.dtype}")
    try:
        mask = torch.broadcast_to(mask.to(known.device, known.dtype), known.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to known's "
                         f"{tuple(known.shape)}") from None
    x = randn_like(known, generator) * torch.as_tensor(sigmas)[0].to(known)
    if start is not None:
        if start.shape != known.shape:
            raise ValueError(f"start has shape {tuple(start.shape)}, known {tuple(known.shape)}")
        x = x + start.to(x)
    guided = Inpaint(denoiser, mask, known, reconstruction_scale=reconstruction_scale)
    if cond is not None:
        options["cond"] = cond
    out = sample(guided, x, sigmas, method=method, generator=generator, **options)
    return mask * known + (1 - mask) * out


__all__ = ["sample_inpaint"]
