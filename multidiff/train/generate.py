"""The one sampling driver: noise from a seeded generator, a core sampler down a sigma grid,
a progress bar. Every recipe's draw goes through :func:`draw`."""

from __future__ import annotations

import torch

from ..core.precond import Precond
from ..core.samplers import DEFAULT_METHOD, default_sigmas, sample
from .progress import sampling_progress


def draw(denoiser, shape: tuple[int, ...], sigmas: torch.Tensor, *, sampler: str, generator: torch.Generator,
         device=None, cond=None, progress: bool = False, desc: str | None = None,
         grad: bool = False) -> torch.Tensor:
    """Run ``sampler`` from noise of ``shape`` (batch first) scaled to ``sigmas[0]``, drawn from
    ``generator`` (on the CPU, then moved to ``device``, so a seed gives the same samples on every
    device), down ``sigmas``; ``cond`` is passed to the denoiser. ``grad`` keeps autograd on (for
    gradient guidance)."""
    x = (torch.randn(shape, generator=generator) * sigmas[0]).to(device)
    options = {} if cond is None else {"cond": cond}
    with sampling_progress(len(sigmas) - 1, desc or f"sample ({sampler})", progress) as callback, \
            torch.set_grad_enabled(grad):
        return sample(denoiser, x, sigmas, method=sampler, generator=generator, callback=callback, **options)


def generate(model: Precond, shape: tuple[int, ...], *, sampler: str = DEFAULT_METHOD, steps: int = 32, seed: int = 0,
             spacing: str | None = None, cond=None, progress: bool = False) -> torch.Tensor:
    """Samples of ``shape`` (batch first) from ``model``: start at ``sigma_max``
    noise and run ``sampler`` down ``steps`` sigmas of ``spacing`` (default:
    the sampler's recommended spacing). The same seed gives the same samples."""
    sigmas = default_sigmas(model.schedule, steps, sampler) if spacing is None else model.schedule.sigmas(steps, spacing)
    generator = torch.Generator().manual_seed(seed)
    return draw(model, shape, sigmas, sampler=sampler, generator=generator, device=next(model.parameters()).device,
                cond=cond, progress=progress)
