"""Heun's second-order method with optional churn (Karras et al. 2022, Alg. 2)."""

from __future__ import annotations

import math

from .base import Stepper, churn, to_d


def heun(denoiser, x, sigmas, *, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf,
         s_noise: float = 1.0, cond=None, callback=None, generator=None):
    """EDM Algorithm 2. With ``s_churn = 0`` (default) it is the deterministic
    2nd-order ODE solver; the last step (to sigma = 0) is an Euler step."""
    run = Stepper(denoiser, x, sigmas, cond, callback)
    s = run.sigma_list
    n = len(run)
    for i in range(n):
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= s[i] <= s_tmax else 0.0
        x, sigma_hat = churn(x, s[i], gamma, s_noise, generator)
        denoised = run.denoise(x, sigma_hat)
        run.report(i, x, denoised)
        d = to_d(x, sigma_hat, denoised)
        x_next = x + (s[i + 1] - sigma_hat) * d
        if s[i + 1] > 0:
            d_next = to_d(x_next, s[i + 1], run.denoise(x_next, run.x_sigmas[i + 1]))
            x_next = x + (s[i + 1] - sigma_hat) * 0.5 * (d + d_next)
        x = x_next
    return x
