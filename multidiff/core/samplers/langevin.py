"""Score-based samplers that run Langevin dynamics: annealed Langevin
dynamics (Song & Ermon 2019) and the predictor-corrector sampler of the
score-SDE paper (Song et al. 2021b). The score is (D(x, sigma) - x) / sigma^2.
"""

from __future__ import annotations

import math

from ..utils import randn_like
from .base import Stepper


def _langevin_step(run: Stepper, x, sigma: float, snr: float, generator):
    """One Langevin corrector step (Song et al. 2021b, Alg. 4). The step size
    eps = 2 (snr ||z|| / ||score||)^2 uses norms averaged over the batch, as
    in the paper's code: per-example norms blow the step up wherever the
    score nearly vanishes (common in low dimension)."""
    denoised = run.denoise(x, sigma)
    score = (denoised - x) / sigma**2
    z = randn_like(x, generator)
    grad_norm = score.reshape(x.shape[0], -1).norm(dim=1).mean()
    noise_norm = z.reshape(x.shape[0], -1).norm(dim=1).mean()
    step = 2 * (snr * noise_norm / grad_norm.clamp_min(1e-12)) ** 2
    return x + step * score + (2 * step).sqrt() * z, denoised


def langevin_pc(denoiser, x, sigmas, *, snr: float = 0.16, corrector_steps: int = 1, cond=None, callback=None,
                generator=None):
    """Predictor-corrector sampling (Song et al. 2021b, Alg. 2-4): a reverse-
    diffusion (ancestral) predictor step, then ``corrector_steps`` Langevin
    corrector steps at the new noise level. The final step to 0 is a denoise."""
    run = Stepper(denoiser, x, sigmas, cond, callback)
    s = run.sigma_list
    for i in range(len(run)):
        denoised = run.denoise(x, run.x_sigmas[i])
        run.report(i, x, denoised)
        if s[i + 1] == 0:
            x = denoised
            break
        ratio2 = (s[i + 1] / s[i]) ** 2
        x = denoised + ratio2 * (x - denoised) + math.sqrt(s[i + 1] ** 2 * (1 - ratio2)) * randn_like(x, generator)
        for _ in range(corrector_steps):
            x, _ = _langevin_step(run, x, s[i + 1], snr, generator)
    return x


def annealed_langevin(denoiser, x, sigmas, *, steps_per_level: int = 10, step_scale: float = 0.3,
                      denoise_final: bool = True, cond=None, callback=None, generator=None):
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1): at each noise
    level sigma_i run Langevin steps x += a/2 score + sqrt(a) z with
    a = step_scale * sigma_i^2 (their eps * sigma_i^2 / sigma_L^2). With
    ``denoise_final`` the sample is finally denoised at the smallest level
    (Jolicoeur-Martineau et al. 2021)."""
    if steps_per_level < 1:
        raise ValueError("steps_per_level must be >= 1")
    run = Stepper(denoiser, x, sigmas, cond, callback)
    s = run.sigma_list
    levels = [i for i in range(len(run)) if s[i] > 0]
    denoised = x
    for i in levels:
        a = step_scale * s[i] ** 2
        for _ in range(steps_per_level):
            denoised = run.denoise(x, run.x_sigmas[i])
            x = x + 0.5 * a * (denoised - x) / s[i] ** 2 + math.sqrt(a) * randn_like(x, generator)
        run.report(i, x, denoised)
    if denoise_final and s[-1] == 0:
        x = run.denoise(x, s[levels[-1]])
    return x
