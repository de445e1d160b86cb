"""Samplers: stateless functions ``method(denoiser, x, sigmas, *, generator=None, **options) -> x``.

``x`` starts as ``noise * sigmas[0]``; ``sigmas`` decreases, normally to 0.
``denoiser(x, sigma) -> x0_hat`` with sigma of shape (B,). Pass
``callback=fn`` to watch the reverse process: ``fn`` gets a dict with
``i, x, sigma, sigma_next, denoised`` at every step.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch

from .first_order import ddim, ddpm, euler, euler_ancestral
from .heun import heun
from .langevin import annealed_langevin, langevin_pc
from .multistep import dpmpp_2m, dpmpp_2m_sde, dpmpp_3m, ipndm, unipc


@dataclass(frozen=True)
class SamplerInfo:
    fn: Callable
    description: str
    stochastic: bool
    order: int  # order of the deterministic ODE solver (0 for pure Langevin)
    spacing: str  # recommended sigma spacing
    nfe: Callable[[int], int]  # denoiser calls for a given number of steps


def _one(steps):
    return steps


SAMPLERS: dict[str, SamplerInfo] = {
    "euler": SamplerInfo(euler, "Euler on the probability-flow ODE (1st order)", False, 1, "logsnr", _one),
    "ddim": SamplerInfo(ddim, "DDIM with eta (eta=0: deterministic, equals Euler)", False, 1, "logsnr", _one),
    "ddpm": SamplerInfo(ddpm, "DDPM ancestral: sample the posterior q(x_{t-1}|x_t, x0_hat)", True, 1, "logsnr", _one),
    "euler_ancestral": SamplerInfo(euler_ancestral, "Euler step plus fresh noise (eta=1: DDPM variance)", True, 1,
                                   "logsnr", _one),
    "heun": SamplerInfo(heun, "EDM Alg. 2: Heun 2nd order, optional churn (2 NFE/step)", False, 2, "karras",
                        lambda steps: 2 * steps - 1),
    "dpmpp_2m": SamplerInfo(dpmpp_2m, "DPM-Solver++(2M), 2nd-order multistep", False, 2, "logsnr_jump", _one),
    "dpmpp_2m_sde": SamplerInfo(dpmpp_2m_sde, "SDE-DPM-Solver++(2M), stochastic multistep", True, 2,
                                "logsnr", _one),
    "dpmpp_3m": SamplerInfo(dpmpp_3m, "DPM-Solver++ 3rd-order multistep (exact weights; "
                            "variant=\"dpmsolver\": diffusers', 2nd order)", False, 3, "logsnr_jump",
                            _one),
    "unipc": SamplerInfo(unipc, "UniPC predictor-corrector multistep (order 2+1)", False, 3, "logsnr_jump", _one),
    "ipndm": SamplerInfo(ipndm, "improved PNDM: variable-step Adams-Bashforth, up to 4th order", False, 4,
                         "karras", _one),
    "langevin_pc": SamplerInfo(langevin_pc, "score-SDE predictor-corrector (ancestral + Langevin)", True, 1,
                               "logsnr", lambda steps: 2 * steps - 1),
    "annealed_langevin": SamplerInfo(annealed_langevin, "annealed Langevin dynamics (NCSN), 10 steps/level", True,
                                     0, "logsnr", lambda steps: 10 * steps + 1),
}


def get_sampler(method: str) -> SamplerInfo:
    if method not in SAMPLERS:
        raise ValueError(f"unknown sampler {method!r}; choose one of: {', '.join(SAMPLERS)}")
    return SAMPLERS[method]


def default_sigmas(schedule, steps: int, method: str, *, sigma_data: float | None = None) -> torch.Tensor:
    """The sigmas ``method`` is meant to run on: a grid calibrated on this model for ``method``
    and ``steps`` if the schedule carries one (``schedule.grids``, filled from a run folder's
    grids.json, see :func:`calibrate_sigmas`), else ``schedule.sigmas`` with the method's
    recommended spacing, placed for data of scale ``sigma_data`` (default: the schedule's own)."""
    calibrated = getattr(schedule, "grids", {}).get((method, steps))
    if calibrated is not None:
        return calibrated.clone()
    return schedule.sigmas(steps, get_sampler(method).spacing, sigma_data=sigma_data)


DEFAULT_METHOD = "unipc"


def sample(denoiser, x: torch.Tensor, sigmas: torch.Tensor, method: str = DEFAULT_METHOD, *,
           generator: torch.Generator | None = None, **options) -> torch.Tensor:
    """Run sampler ``method`` from ``x`` (= noise * sigmas[0]) down the ``sigmas``."""
    info = get_sampler(method)
    params = inspect.signature(info.fn).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        allowed = [p for p in params if p not in ("denoiser", "x", "sigmas")]
        raise ValueError(f"sampler {method!r} has no option(s) {unknown}; its options are {allowed}")
    if "generator" in params:
        options["generator"] = generator
    return info.fn(denoiser, x, sigmas, **options)


from .calibrate import calibrate_sigmas  # noqa: E402  (it calls sample, defined above)

__all__ = ["DEFAULT_METHOD", "calibrate_sigmas", "SAMPLERS", "SamplerInfo", "get_sampler", "default_sigmas", "sample", "euler", "ddim", "ddpm", "euler_ancestral", "heun",
           "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m", "unipc", "ipndm", "langevin_pc", "annealed_langevin"]
