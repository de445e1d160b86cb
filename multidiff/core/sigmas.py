"""Sigma conversions (VP <-> VE, log-SNR, flow time) and the sampling grids every schedule
places its steps on (Karras, log-SNR, the log-SNR jump grid). Notation as in
:mod:`multidiff.core.schedules`, which re-exports every name here."""

from __future__ import annotations

import math

import torch

# ---------------------------------------------------------------- conversions


def sigma_to_alpha_bar(sigma: torch.Tensor) -> torch.Tensor:
    return 1.0 / (1.0 + sigma**2)


def alpha_bar_to_sigma(alpha_bar: torch.Tensor) -> torch.Tensor:
    return ((1.0 - alpha_bar) / alpha_bar).sqrt()


def sigma_to_logsnr(sigma: torch.Tensor) -> torch.Tensor:
    return -2.0 * torch.log(sigma)


def logsnr_to_sigma(logsnr: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * logsnr)


def vp_scale(sigma: torch.Tensor) -> torch.Tensor:
    """``x_vp = vp_scale(sigma) * x``: the one VE <-> VP conversion."""
    return 1.0 / (1.0 + sigma**2).sqrt()


def flow_t_to_sigma(t: torch.Tensor) -> torch.Tensor:
    """Rectified flow ``x_t = (1-t) x0 + t n`` is VE with ``sigma = t / (1-t)``."""
    return t / (1.0 - t)


def sigma_to_flow_t(sigma: torch.Tensor) -> torch.Tensor:
    return sigma / (1.0 + sigma)


# ---------------------------------------------------------------- spacings


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, Eq. 5: ``steps`` sigmas from sigma_max to sigma_min, then 0."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    inv_rho = 1.0 / rho
    sig = (sigma_max**inv_rho + ramp * (sigma_min**inv_rho - sigma_max**inv_rho)) ** rho
    return _append_zero(sig)


def logsnr_sigmas(steps: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Sigmas uniform in log-SNR (equivalently log sigma), then 0."""
    sig = torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), steps, dtype=torch.float64))
    return _append_zero(sig)


# logsnr_jump's band, in units of sigma_data, how fast its step density falls above the band,
# and the step counts over which it fades into Karras's grid (docs/benchmarks.md).
JUMP_SIGMA_HI = 5.0
JUMP_SIGMA_LO = 2.5  # sigma_lo = sigma_data * min(0.05, JUMP_SIGMA_LO / steps)
JUMP_DECAY = 0.5
JUMP_FADE_STEPS = (16, 48)


def logsnr_jump_sigmas(steps: int, sigma_min: float, sigma_max: float, sigma_data: float = 1.0,
                       decay: float = JUMP_DECAY, rho: float = 7.0) -> torch.Tensor:
    """Log-SNR steps through the band where the denoiser changes, few and long
    ones above it, fading into Karras's grid as steps grow: ``steps`` sigmas
    from sigma_max down, then 0.

    Far above the data scale D(x, sigma) is nearly constant (for data of scale
    sigma_data it moves like (sigma_data / sigma)^2), and exponential
    integrators are exact for a constant D, so few steps cover that range.
    The grid is uniform in a warped log sigma whose step density is 1 inside
    the band [sigma_lo, sigma_hi] and falls like ``(sigma_hi / sigma)^decay``
    above it (:func:`_jump_warp`): with few steps the first one jumps into the
    band. On a trained network the denoiser far above the data scale is not
    the ideal near-constant one, and with many steps Karras et al. (2022, Eq. 5)
    spacing, denser there, is more accurate; so between JUMP_FADE_STEPS the
    grid moves, in log sigma, from the warped grid to Karras's (:func:`_fade`).
    Every step shrinks as ``steps`` grows, so a sampler of order p converges
    at order p (a fixed first jump did not, and left an error floor). In units
    of ``sigma_data``: sigma_hi = JUMP_SIGMA_HI, sigma_lo = min(0.05,
    JUMP_SIGMA_LO / steps), never below sigma_min. All constants were chosen
    on Gaussian-mixture ODE families and trained networks (docs/benchmarks.md)."""
    if steps == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    hi = min(sigma_max, JUMP_SIGMA_HI * sigma_data)
    lo = min(max(sigma_min, sigma_data * min(0.05, JUMP_SIGMA_LO / steps)), hi / 2)
    if hi >= sigma_max:
        return logsnr_sigmas(steps, lo, sigma_max)
    to_u, from_u = _jump_warp(math.log(hi), decay)
    u = torch.linspace(to_u(math.log(sigma_max)), to_u(math.log(lo)), steps, dtype=torch.float64)
    sig = torch.exp(from_u(u))
    sig[0], sig[-1] = sigma_max, lo  # exact ends, free of round-off in the warp
    return _fade(_append_zero(sig), karras_sigmas(steps, sigma_min, sigma_max, rho), steps)


def _fade(jump: torch.Tensor, karras: torch.Tensor, steps: int) -> torch.Tensor:
    """``exp((1 - w) log jump + w log karras)``, w rising linearly from 0 to 1 over
    JUMP_FADE_STEPS; a mix of two decreasing grids in log sigma is decreasing."""
    first, last = JUMP_FADE_STEPS
    w = min(1.0, max(0.0, (steps - first) / (last - first)))
    if w == 0.0:
        return jump
    mixed = torch.exp((1 - w) * jump[:-1].log() + w * karras[:-1].log())
    return _append_zero(mixed)


def _jump_warp(log_hi: float, decay: float):
    """The warp u(log sigma) of :func:`logsnr_jump_sigmas` and its inverse:
    du / dlog(sigma) = 1 below sigma_hi and exp(-decay (log sigma - log sigma_hi)) above,
    so the whole range above sigma_hi, however large, is at most 1 / decay long in u."""
    def to_u(log_sigma):
        if isinstance(log_sigma, torch.Tensor):
            above = (log_sigma - log_hi).clamp(min=0)
            return torch.minimum(log_sigma, torch.full_like(log_sigma, log_hi)) - torch.expm1(-decay * above) / decay
        above = max(0.0, log_sigma - log_hi)
        return min(log_sigma, log_hi) - math.expm1(-decay * above) / decay

    def from_u(u: torch.Tensor) -> torch.Tensor:
        above = (u - log_hi).clamp(min=0)
        return torch.minimum(u, torch.full_like(u, log_hi)) - torch.log1p(-decay * above) / decay

    return to_u, from_u


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def check_sigmas(sigmas: torch.Tensor) -> None:
    """Raise ValueError unless ``sigmas`` is 1-D, finite, non-negative and strictly decreasing."""
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(f"sigmas must be a 1-D tensor with at least 2 entries, got shape {tuple(sigmas.shape)}")
    if not torch.isfinite(sigmas).all() or (sigmas < 0).any():
        raise ValueError("sigmas must be finite and non-negative")
    if not (sigmas[1:] < sigmas[:-1]).all():
        raise ValueError("sigmas must be strictly decreasing (largest noise first)")


def _check_steps(steps: int) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
