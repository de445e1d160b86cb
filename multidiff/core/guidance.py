"""Guidance and constraints: denoiser -> denoiser wrappers, so every sampler
gets them for free.

In x0 space the score is ``(D(x, sigma) - x) / sigma^2``, so adding a term
``g`` to the score is ``D' = D + sigma^2 g``; mixing scores linearly is
mixing denoisers linearly.
"""

from __future__ import annotations

from typing import Callable

import torch

from .utils import append_dims, batch_sigma


def _cat(a, b):
    """Concatenate two conditionings (tensors, or dicts of tensors) along the batch."""
    if isinstance(a, dict):
        if not isinstance(b, dict) or set(a) != set(b):
            raise ValueError("cond and uncond must be dicts with the same keys")
        return {k: _cat(a[k], b[k]) for k in a}
    if isinstance(a, torch.Tensor):
        b = torch.as_tensor(b, dtype=a.dtype, device=a.device)
        if b.ndim == 0 or b.shape[0] == 1:  # one null conditioning for the whole batch
            b = b.expand(a.shape) if b.ndim == 0 else b.expand(a.shape[0], *b.shape[1:])
        if b.shape != a.shape:
            raise ValueError(f"uncond shape {tuple(b.shape)} does not match cond shape {tuple(a.shape)}")
        return torch.cat([a, b])
    raise TypeError(f"cannot batch a conditioning of type {type(a).__name__}; use tensors or dicts of tensors")


def _call(denoiser, x, sigma, cond, **options):
    return denoiser(x, sigma, **options) if cond is None else denoiser(x, sigma, cond, **options)


class ClassifierFreeGuidance:
    """Classifier-free guidance (Ho & Salimans 2022, Eq. 6) in x0 space:
    ``D = D(x | uncond) + scale * (D(x | cond) - D(x | uncond))``.

    ``scale = 1`` is the plain conditional model, 0 the unconditional one.
    ``uncond`` has cond's structure (e.g. the null class); a tensor with
    batch 1 is broadcast. Both branches run in one batched call."""

    def __init__(self, denoiser, scale: float, uncond):
        self.denoiser, self.scale, self.uncond = denoiser, float(scale), uncond

    def __call__(self, x, sigma, cond=None):
        if cond is None:
            raise ValueError("classifier-free guidance needs a cond to guide toward")
        if self.scale == 1.0:
            return _call(self.denoiser, x, sigma, cond)
        sigma = batch_sigma(sigma, x)
        both = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), _cat(cond, self.uncond))
        d_cond, d_uncond = both.chunk(2)
        return d_uncond + self.scale * (d_cond - d_uncond)


class GradientGuidance:
    """Gradient guidance from any differentiable score ``fn(x, sigma, cond) -> (B,)``:
    a classifier's log p(y | x_sigma) (Dhariwal & Nichol 2021, Alg. 1) or a
    value function (Janner et al. 2022). ``D' = D + scale sigma^2 grad_x fn``.

    ``on="x"`` differentiates ``fn`` at the noisy x (a noise-aware
    classifier); ``on="x0"`` evaluates ``fn`` at the denoised estimate and
    back-propagates through the denoiser (reconstruction / universal guidance,
    for scores that only understand clean data)."""

    def __init__(self, denoiser, fn: Callable, scale: float = 1.0, on: str = "x"):
        if on not in ("x", "x0"):
            raise ValueError(f"on must be 'x' or 'x0', got {on!r}")
        self.denoiser, self.fn, self.scale, self.on = denoiser, fn, float(scale), on

    def __call__(self, x, sigma, cond=None):
        sigma = batch_sigma(sigma, x)
        with torch.enable_grad():
            x_req = x.detach().requires_grad_(True)
            if self.on == "x":
                denoised = _call(self.denoiser, x, sigma, cond).detach()
                value = self.fn(x_req, sigma, cond)
            else:
                denoised = _call(self.denoiser, x_req, sigma, cond)
                value = self.fn(denoised, sigma, cond)
            if value.shape != (x.shape[0],):
                raise ValueError(f"guidance fn must return shape ({x.shape[0]},), got {tuple(value.shape)}")
            (grad,) = torch.autograd.grad(value.sum(), x_req)
        return denoised.detach() + self.scale * append_dims(sigma, x.ndim) ** 2 * grad


class Inpaint:
    """Inpainting by replacement in x0 space: where ``mask`` is 1 the estimate
    is the ``known`` value, elsewhere the model's (the imputation scheme of
    Song et al. 2021b, App. I.2, applied to the denoised estimate). Deterministic
    samplers then end exactly on ``known`` inside the mask.

    ``reconstruction_scale > 0`` also pulls the unknown part toward
    consistency with the known part through the model's Jacobian
    (reconstruction guidance, Ho et al. 2022, Eq. 8)."""

    def __init__(self, denoiser, mask: torch.Tensor, known: torch.Tensor, reconstruction_scale: float = 0.0):
        self.denoiser, self.reconstruction_scale = denoiser, reconstruction_scale
        self.mask, self.known = mask, known

    def _residual(self, denoised, sigma, cond):
        return -0.5 * ((self.mask * (denoised - self.known)) ** 2).reshape(denoised.shape[0], -1).sum(1)

    def __call__(self, x, sigma, cond=None):
        mask = torch.broadcast_to(self.mask.to(x.dtype), x.shape)
        known = torch.broadcast_to(self.known.to(x.dtype), x.shape)
        if self.reconstruction_scale > 0:
            guided = GradientGuidance(self.denoiser, self._residual, self.reconstruction_scale, on="x0")
            denoised = guided(x, sigma, cond)
        else:
            denoised = _call(self.denoiser, x, sigma, cond)
        return mask * known + (1 - mask) * denoised


class Project:
    """Project the x0 estimate with ``fn(x0) -> x0`` (clip, dynamic thresholding,
    snap to the nearest token embedding, ...)."""

    def __init__(self, denoiser, fn: Callable[[torch.Tensor], torch.Tensor]):
        self.denoiser, self.fn = denoiser, fn

    def __call__(self, x, sigma, cond=None):
        return self.fn(_call(self.denoiser, x, sigma, cond))


def nearest_rows(x: torch.Tensor, table: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Index of the nearest row of ``table (V, D)`` (squared L2) for each vector along the last
    axis of ``x (..., D)``: ``(...)`` longs. ``allowed`` (bool, broadcastable to ``(..., V)``)
    restricts the choice; every position must allow at least one row."""
    flat = x.reshape(-1, x.shape[-1]).to(table.dtype)  # (N, D)
    distance = (flat**2).sum(1, keepdim=True) - 2 * flat @ table.T + (table**2).sum(1)[None]  # (N, V)
    distance = distance.reshape(*x.shape[:-1], table.shape[0])
    if allowed is not None:
        allowed = torch.broadcast_to(allowed.to(x.device), distance.shape)
        if not bool(allowed.any(-1).all()):
            raise ValueError("allowed forbids every row of the table at some position")
        distance = distance.masked_fill(~allowed, float("inf"))
    return distance.argmin(-1)


class Clamp:
    """The clamping trick of Diffusion-LM (Li et al. 2022, Sec. 4.2): replace the x0 estimate
    by its nearest row of ``table (V, D)`` (vectors along the last axis, squared L2), so each
    step commits to a point of the table, e.g. the token embeddings. ``allowed`` (bool,
    broadcastable to ``x.shape[:-1] + (V,)``) restricts the rows per position; clamping acts
    only at ``sigma <= below`` (None: at every step)."""

    def __init__(self, denoiser, table: torch.Tensor, allowed: torch.Tensor | None = None,
                 below: float | None = None):
        if table.ndim != 2:
            raise ValueError(f"table must be (V, D), got shape {tuple(table.shape)}")
        self.denoiser, self.table, self.allowed, self.below = denoiser, table, allowed, below

    def __call__(self, x, sigma, cond=None):
        denoised = _call(self.denoiser, x, sigma, cond)
        if denoised.shape[-1] != self.table.shape[1]:
            raise ValueError(f"x has {denoised.shape[-1]} features in its last axis, the table {self.table.shape[1]}")
        table = self.table.to(denoised.device, denoised.dtype)
        snapped = table[nearest_rows(denoised.detach(), table, self.allowed)]  # (..., D)
        if self.below is None:
            return snapped
        active = append_dims(batch_sigma(sigma, x) <= self.below, x.ndim)
        return torch.where(active, snapped, denoised)


class RestrictRows:
    """Condition a categorical denoiser (one that returns a posterior mean over the rows of a
    table, e.g. :class:`~multidiff.core.precond.CategoricalPrecond`) on the event "position l
    holds one of the rows ``allowed[..., l, :]``": each position's posterior is renormalised over
    its allowed rows before the mean is taken. Unlike :class:`Clamp`, which snaps an estimate
    that may sit between forbidden rows, the model itself picks among the allowed rows, so a
    position barred from ``[PAD]`` gets the word the context makes likely, not the row nearest
    ``[PAD]``. Positions are restricted one at a time (the event's effect on the other positions'
    posteriors is left out). ``allowed`` (bool, ``(..., L, V)`` broadcastable to the logits; a
    batch-doubling wrapper such as classifier-free guidance may sit outside: the rows repeat).

    ``temperature`` divides the logits before the softmax: below 1 each position's posterior
    leans toward its likeliest rows, so the sampler follows the model's more probable words
    (the sampling temperature of language models, applied to the denoiser; 1: unchanged).
    ``allowed=None`` keeps every row (a temperature alone)."""

    def __init__(self, model, allowed: torch.Tensor | None = None, temperature: float = 1.0):
        if not callable(getattr(model, "logits", None)):
            raise ValueError(f"RestrictRows needs a categorical denoiser (with .logits); "
                             f"{type(model).__name__} has none")
        if allowed is not None and (allowed.dtype != torch.bool or not bool(allowed.any(-1).all())):
            raise ValueError("allowed must be a bool tensor that allows at least one row at every position")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.model, self.allowed, self.temperature = model, allowed, float(temperature)

    def __call__(self, x, sigma, cond=None, previous=None):
        allowed, options = self.allowed, {}
        if allowed is not None:
            if allowed.ndim == x.ndim and allowed.shape[0] not in (1, x.shape[0]):
                if x.shape[0] % allowed.shape[0]:
                    raise ValueError(f"allowed rows for a batch of {allowed.shape[0]}, x has {x.shape[0]}")
                allowed = allowed.repeat(x.shape[0] // allowed.shape[0], *([1] * (allowed.ndim - 1)))
            options["allowed"] = allowed
        if self.temperature != 1.0:
            options["temperature"] = self.temperature
        if previous is not None:
            options["previous"] = previous
        return _call(self.model, x, sigma, cond, **options)


class SelfConditioning:
    """Feed a self-conditioned model its own previous x0 estimate (Chen et al. 2023, "Analog
    Bits"): ``model(x, sigma, cond, previous=last)``, where ``last`` is what this wrapper returned
    at its previous call. Wrap the model itself, inside every other wrapper, so any sampler
    drives it. A call at a higher sigma than the previous one (a new sampling run), or with
    another shape, starts afresh with ``previous=None``; :meth:`reset` does so by hand."""

    def __init__(self, model):
        self.model = model
        self.reset()

    def reset(self) -> None:
        self._last, self._sigma = None, None

    def __call__(self, x, sigma, cond=None):
        level = float(torch.as_tensor(sigma).max())
        fresh = self._last is None or self._last.shape != x.shape or level > self._sigma
        previous = None if fresh else self._last
        out = _call(self.model, x, sigma, cond, previous=previous)
        self._last, self._sigma = out.detach(), level
        return out


def clip(lo: float = -1.0, hi: float = 1.0):
    """Static thresholding: clamp x0 to [lo, hi]."""
    return lambda x0: x0.clamp(lo, hi)


def dynamic_threshold(percentile: float = 0.995, max_value: float = 1.0):
    """Dynamic thresholding (Saharia et al. 2022, Sec. 2.3): s = max(max_value,
    the percentile of |x0| per example); clamp to [-s, s] and divide by s/max_value."""

    def fn(x0):
        s = torch.quantile(x0.reshape(x0.shape[0], -1).abs().float(), percentile, dim=1).to(x0.dtype)
        s = append_dims(s.clamp(min=max_value), x0.ndim)
        return x0.clamp(-s, s) * (max_value / s)

    return fn
