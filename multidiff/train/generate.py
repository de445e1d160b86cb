"""Draw samples from a trained denoiser with any of the core samplers."""

from __future__ import annotations

import torch

from ..core.precond import Precond
from ..core.samplers import DEFAULT_METHOD, default_sigmas, sample
from .progress import sampling_progress


@torch.no_grad()
def generate(model: Precond, shape: tuple[int, ...], *, sampler: str = DEFAULT_METHOD, steps: int = 32, seed: int = 0,
             spacing: str | None = None, cond=None, progress: bool = False) -> torch.Tensor:
    """Samples of ``shape`` (batch first) from ``model``: start at ``sigma_max``
    noise and run ``sampler`` down ``steps`` sigmas of ``spacing`` (default:
    the sampler's recommended spacing). The same seed gives the same samples."""
    sigmas = default_sigmas(model.schedule, steps, sampler) if spacing is None else model.schedule.sigmas(steps, spacing)
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    x = (torch.randn(shape, generator=generator) * sigmas[0]).to(device)
    with sampling_progress(len(sigmas) - 1, f"sample ({sampler})", progress) as callback:
        options = {"callback": callback} if cond is None else {"callback": callback, "cond": cond}
        return sample(model, x, sigmas, method=sampler, generator=generator, **options)
