"""Grids calibrated on the model itself: where a few steps should go is decided
by the denoiser (the data, for an exact one; the trained network otherwise),
not by constants in units of ``sigma_data``.

A per-dimension data scale cannot tell two far-apart point-like modes from one
broad blob, yet the first needs steps where the trajectories choose their mode
(sigma around half the distance between modes) and steps below the modes'
spread, where the second needs neither (docs/benchmarks.md, the mixture
families). :func:`calibrate_sigmas` measures it instead:

1. solve the probability-flow ODE finely from ``noise`` (calibration draws,
   not the ones that will be sampled), the reference;
2. run ``method`` on each candidate grid of ``steps`` steps from the same
   noise and start from the one closest to the reference;
3. move the grid's nodes to minimise the RMS distance to the reference
   (derivative-free: :func:`nelder_mead`, in coordinates that keep the grid
   decreasing, inside [sigma_min, sigma_max], with log-steps of at least
   ``min_log_step``) on part of the batch;
4. keep the moved grid only if it is also closer on the rest of the batch,
   which the optimiser never saw (else the starting grid is returned): a
   few boundary trajectories can pull the nodes to where they help only them.

It costs about ``evals * steps`` denoiser calls on the calibration batch, once
per (model, method, steps); the grid is then used for any number of samples.
The RMS over draws is dominated by the rare trajectories that sit near a
boundary between modes, so the calibration batch must be large enough to hold
some (thousands of draws for a cheap model; see the benchmark).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from ..schedules import check_sigmas, logsnr_sigmas


def reference_solution(denoiser, noise: torch.Tensor, sigma_max: float, sigma_min: float, steps: int = 512,
                       **options) -> torch.Tensor:
    """The ODE solved finely from ``noise`` (= z * sigma_max): ``ipndm`` on
    ``steps`` log-uniform sigmas from sigma_max to sigma_min, then to 0."""
    from . import sample
    return sample(denoiser, noise.clone(), logsnr_sigmas(steps, sigma_min, sigma_max), method="ipndm", **options)


def held_back(n: int, holdout: float) -> slice:
    """The draws of a calibration batch of ``n`` that only check the result: the last ``int(holdout * n)``."""
    return slice(n - int(holdout * n), n)


def _per_draw(cond, noise: torch.Tensor) -> bool:
    return isinstance(cond, torch.Tensor) and cond.ndim > 0 and len(cond) == len(noise)


def grid_error(denoiser, noise: torch.Tensor, reference: torch.Tensor, grid: torch.Tensor, method: str,
               part: slice = slice(None), cond=None, **options) -> float:
    """RMS distance (per element) between ``method`` on ``grid`` from ``noise[part]`` and
    ``reference[part]``; a ``cond`` with one row per draw is sliced with the noise."""
    from . import sample
    if cond is not None:
        options["cond"] = cond[part] if _per_draw(cond, noise) else cond
    with torch.no_grad():
        out = sample(denoiser, noise[part].clone(), grid, method=method, **options)
    return (out - reference[part]).double().pow(2).mean().sqrt().item()


def grid_to_params(sigmas: torch.Tensor, sigma_min: float, min_log_step: float) -> list[float]:
    """Coordinates of a grid (sigma_max = sigmas[0] > ... > sigmas[-2] >= sigma_min, then 0):
    the log-steps, and the slack left below the last node, above ``min_log_step``,
    as log-weights of a softmax (so any real vector maps back to a valid grid)."""
    log_s = sigmas[:-1].double().log()
    gaps = torch.cat([log_s[:-1] - log_s[1:], (log_s[-1:] - math.log(sigma_min)).clamp_min(0)])
    free = (gaps - min_log_step).clamp_min(1e-6 * max(float(gaps.sum()), 1e-12))
    return free.log().tolist()


def params_to_grid(params: Sequence[float], sigma_max: float, sigma_min: float, min_log_step: float) -> torch.Tensor:
    """Inverse of :func:`grid_to_params`: ``len(params)`` steps from sigma_max, then 0."""
    a = torch.tensor(params, dtype=torch.float64)
    span = math.log(sigma_max) - math.log(sigma_min) - len(a) * min_log_step
    gaps = min_log_step + span * torch.softmax(a, 0)
    log_s = math.log(sigma_max) - torch.cat([torch.zeros(1, dtype=torch.float64), gaps[:-1].cumsum(0)])
    sig = log_s.exp()
    sig[0] = sigma_max
    return torch.cat([sig, sig.new_zeros(1)])


def nelder_mead(f: Callable[[list[float]], float], x0: Sequence[float], evals: int, step: float = 0.5,
                tol: float = 1e-10) -> tuple[list[float], float, int]:
    """Minimise ``f`` from ``x0`` with the Nelder-Mead simplex method, with the
    dimension-dependent coefficients of Gao and Han (2012); at most ``evals``
    calls. Returns (best point, its value, calls made)."""
    n = len(x0)
    alpha, gamma, rho, shrink = 1.0, 1.0 + 2.0 / n, 0.75 - 1.0 / (2 * n), 1.0 - 1.0 / n
    calls = 0

    def value(p):
        nonlocal calls
        calls += 1
        v = float(f(p))
        return v if math.isfinite(v) else math.inf

    simplex = [list(map(float, x0))]
    for i in range(n):
        p = list(simplex[0])
        p[i] += step
        simplex.append(p)
    values = [value(p) for p in simplex]
    while calls < evals:
        order = sorted(range(n + 1), key=values.__getitem__)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        if values[-1] - values[0] <= tol * max(abs(values[0]), 1e-300):
            break
        centre = [sum(p[j] for p in simplex[:-1]) / n for j in range(n)]
        worst = simplex[-1]

        def toward(t):
            return [c + t * (c - w) for c, w in zip(centre, worst)]

        reflected = toward(alpha)
        v_r = value(reflected)
        if v_r < values[0]:
            expanded = toward(gamma)
            v_e = value(expanded)
            simplex[-1], values[-1] = (expanded, v_e) if v_e < v_r else (reflected, v_r)
        elif v_r < values[-2]:
            simplex[-1], values[-1] = reflected, v_r
        else:
            t = rho if v_r < values[-1] else -rho  # outside or inside contraction
            contracted = toward(t)
            v_c = value(contracted)
            if v_c < min(v_r, values[-1]):
                simplex[-1], values[-1] = contracted, v_c
            else:
                best = simplex[0]
                simplex = [best] + [[b + shrink * (q - b) for b, q in zip(best, p)] for p in simplex[1:]]
                values = [values[0]] + [value(p) for p in simplex[1:]]
    i = min(range(n + 1), key=values.__getitem__)
    return simplex[i], values[i], calls


# The third starting grid is the log-SNR jump grid placed for data this many times wider than sigma_data
WIDE_START_SCALE = 4.0


def starting_grids(schedule, steps: int, method: str, sigma_data: float | None = None) -> list[torch.Tensor]:
    """The grids a calibration of ``method`` starts from: the spacing rule's grid for data of scale
    ``sigma_data`` (default: the schedule's), never a calibrated one the schedule may carry (a run
    calibrated again starts afresh); Karras's; and the ``logsnr_jump`` grid for data WIDE_START_SCALE
    times wider, whose band reaches up to where trajectories choose between modes that lie far apart
    against the per-dimension scale (a search started from the first two can stay below it: on a 24-D
    mixture of three far, point-like modes at NFE 5 it ended 2.95x diffusers' best, from this one 0.66x;
    docs/benchmarks.md). The log-uniform grid :func:`calibrate_sigmas` adds makes four."""
    from . import get_sampler
    wide = (schedule.sigma_data if sigma_data is None else sigma_data) * WIDE_START_SCALE
    return [schedule.sigmas(steps, get_sampler(method).spacing, sigma_data=sigma_data),
            schedule.sigmas(steps, "karras", sigma_data=sigma_data),
            schedule.sigmas(steps, "logsnr_jump", sigma_data=wide)]


def calibrate_sigmas(denoiser, noise: torch.Tensor, steps: int, method: str = "unipc", *,
                     sigma_min: float, sigma_max: float,
                     candidates: Sequence[torch.Tensor] = (), reference: torch.Tensor | None = None,
                     reference_steps: int = 512, evals: int | None = None, min_log_step: float = 0.02,
                     holdout: float = 0.25, cond=None, **options) -> torch.Tensor:
    """A grid of ``steps`` steps (``steps + 1`` sigmas ending in 0) on which
    ``method`` follows the model's own ODE solution from ``noise`` most closely
    (RMS over the batch): the best of ``candidates`` (and a log-uniform grid),
    refined by :func:`nelder_mead` with ``evals`` runs (default ``60 * steps``).

    ``noise`` is the starting batch (z * sigma_max), a calibration set of its
    own; ``reference`` its converged solution if known (else solved here with
    ``reference_steps`` ipndm steps). The last ``holdout`` share of the batch
    only decides whether the refined grid is kept. Nodes stay in
    [sigma_min, sigma_max]: a trained network is not asked for sigmas it was
    not trained on. ``cond`` and ``options`` go to the denoiser through
    :func:`sample`, as when sampling."""
    from . import get_sampler
    get_sampler(method)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
    if math.log(sigma_max / sigma_min) <= (steps + 1) * min_log_step:
        raise ValueError(f"{steps} steps of at least {min_log_step} in log sigma do not fit in "
                         f"[{sigma_min}, {sigma_max}]")
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout must be in [0, 1), got {holdout}")
    if steps == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    call = dict(options, cond=cond) if cond is not None else dict(options)
    if reference is None:
        reference = reference_solution(denoiser, noise, sigma_max, sigma_min, reference_steps, **call)
    unseen = held_back(len(noise), holdout)
    if cond is not None and unseen.start < len(noise) and not _per_draw(cond, noise):
        raise ValueError(f"cond must be a tensor with one row per draw ({len(noise)}) to split the batch; "
                         f"or pass holdout=0")

    def error(grid: torch.Tensor, part: slice = slice(0, unseen.start)) -> float:
        return grid_error(denoiser, noise, reference, grid, method, part, **call)

    starts = [logsnr_sigmas(steps, sigma_min, sigma_max)]
    for grid in candidates:
        grid = torch.as_tensor(grid, dtype=torch.float64)
        check_sigmas(grid)
        if len(grid) != steps + 1 or grid[-1] != 0:
            raise ValueError(f"a candidate grid must have {steps + 1} sigmas ending in 0, got {len(grid)}")
        starts.append(params_to_grid(grid_to_params(grid.clamp(min=sigma_min), sigma_min, min_log_step),
                                     sigma_max, sigma_min, min_log_step))
    scored = sorted(((error(g), i) for i, g in enumerate(starts)))
    x0 = grid_to_params(starts[scored[0][1]], sigma_min, min_log_step)
    best, _, _ = nelder_mead(lambda p: error(params_to_grid(p, sigma_max, sigma_min, min_log_step)), x0,
                             evals=60 * steps if evals is None else evals)
    start, refined = params_to_grid(x0, sigma_max, sigma_min, min_log_step), \
        params_to_grid(best, sigma_max, sigma_min, min_log_step)
    if unseen.start < len(noise):
        return refined if error(refined, unseen) < error(start, unseen) else start
    return refined


__all__ = ["calibrate_sigmas", "starting_grids", "reference_solution", "grid_error", "held_back", "nelder_mead",
           "grid_to_params", "params_to_grid"]
