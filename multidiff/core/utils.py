"""Small tensor helpers shared by the core. The core reads no more of
``x.shape`` than ``x.shape[0]``; everything else broadcasts via
:func:`append_dims`."""

from __future__ import annotations

import torch


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims so ``v`` (shape ``(B,)`` or ``()``)
    broadcasts against a tensor with ``ndim`` dims."""
    if v.ndim > ndim:
        raise ValueError(f"cannot broadcast a {v.ndim}-d tensor to {ndim} dims")
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def batch_sigma(sigma, x: torch.Tensor) -> torch.Tensor:
    """Return ``sigma`` as a ``(B,)`` tensor of ``x``'s dtype and device."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0:
        return sigma.expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or shape ({x.shape[0]},), got {tuple(sigma.shape)}")
    return sigma


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``, drawn from ``generator`` when given.

    Noise is drawn on the generator's device and moved, so a CPU generator
    gives the same numbers whatever device ``x`` lives on."""
    if generator is None:
        return torch.randn_like(x)
    noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
    return noise.to(x.device)


def mean_flat(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over all but the batch dim; with ``mask`` (broadcastable to ``x``,
    1 = counts) the mean over the masked elements only."""
    if mask is None:
        return x.reshape(x.shape[0], -1).mean(dim=1)
    mask = torch.broadcast_to(mask.to(x.dtype), x.shape)
    num = (x * mask).reshape(x.shape[0], -1).sum(dim=1)
    den = mask.reshape(x.shape[0], -1).sum(dim=1).clamp_min(1.0)
    return num / den
