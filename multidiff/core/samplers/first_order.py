"""First-order samplers: Euler, DDIM, DDPM ancestral and Euler ancestral.

In sigma these are one family (Karras et al. 2022, Sec. 3): DDIM with eta = 0
is the Euler method on the probability-flow ODE, and eta = 1 samples the
DDPM posterior q(x_{t-1} | x_t, x0_hat).
"""

from __future__ import annotations

import torch

from ..utils import randn_like
from .base import Stepper, ancestral_split


def euler(denoiser, x, sigmas, *, cond=None, callback=None):
    """Euler's method on the probability-flow ODE (Karras et al. 2022, Alg. 1 with Euler steps)."""
    run = Stepper(denoiser, x, sigmas, cond, callback)
    s = run.sigma_list
    for i in range(len(run)):
        denoised = run.denoise(x, run.x_sigmas[i])
        run.report(i, x, denoised)
        x = torch.lerp(denoised, x, s[i + 1] / s[i])  # = x + (sigma_next - sigma) (x - D) / sigma
    return x


def ddim(denoiser, x, sigmas, *, eta: float = 0.0, cond=None, callback=None, generator=None):
    """DDIM (Song et al. 2021a, Eq. 12) in sigma. Its update, the predicted x0
    plus the direction pointing to x_t rescaled to sigma_down, is exactly an
    Euler step to sigma_down; eta-scaled noise then brings it to sigma_next.
    So DDIM is :func:`euler_ancestral` with eta = 0 by default."""
    return euler_ancestral(denoiser, x, sigmas, eta=eta, cond=cond, callback=callback, generator=generator)


def ddpm(denoiser, x, sigmas, *, cond=None, callback=None, generator=None):
    """DDPM ancestral sampling (Ho et al. 2020, Alg. 2): draw x_next from the
    posterior q(x_next | x, x0 = D(x)) (Eqs. 6-7, in sigma): mean
    x0 + (sigma_next / sigma)^2 (x - x0), variance sigma_next^2 (1 - (sigma_next / sigma)^2)."""
    run = Stepper(denoiser, x, sigmas, cond, callback)
    s = run.sigma_list
    for i in range(len(run)):
        denoised = run.denoise(x, run.x_sigmas[i])
        run.report(i, x, denoised)
        ratio2 = (s[i + 1] / s[i]) ** 2
        x = denoised + ratio2 * (x - denoised)
        if s[i + 1] > 0:
            x = x + (s[i + 1] ** 2 * (1.0 - ratio2)) ** 0.5 * randn_like(x, generator)
    return x


def euler_ancestral(denoiser, x, sigmas, *, eta: float = 1.0, s_noise: float = 1.0, cond=None, callback=None,
                    generator=None):
    """Euler step to sigma_down, then fresh noise of std sigma_up (eta = 1: DDPM's posterior variance)."""
    run = Stepper(denoiser, x, sigmas, cond, callback)
    s = run.sigma_list
    for i in range(len(run)):
        denoised = run.denoise(x, run.x_sigmas[i])
        run.report(i, x, denoised)
        sigma_down, sigma_up = ancestral_split(s[i], s[i + 1], eta)
        x = torch.lerp(denoised, x, sigma_down / s[i])  # Euler step to sigma_down
        if sigma_up > 0:
            x = x + sigma_up * s_noise * randn_like(x, generator)
    return x
