"""``multidiff calibrate``: sigma grids calibrated on a run's own network, saved in its folder.

A recipe that supports it gives a :class:`CalibrationProblem`: the denoiser
exactly as its ``sample`` uses it by default (guidance included), the shape
of a batch and its conditioning. :func:`calibrate_run` solves the network's
probability-flow ODE finely from a calibration batch, calibrates a grid per
step count (:func:`multidiff.core.samplers.calibrate_sigmas`) and adds it to
the run's grids.json, which ``default_sigmas`` then uses for that sampler and
step count (docs/concepts.md, docs/benchmarks.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..core.samplers import get_sampler
from ..core.samplers.calibrate import calibrate_sigmas, grid_error, held_back, reference_solution, starting_grids
from .checkpoint import save_grid

REFERENCE_STEPS = 512
HOLDOUT = 0.25  # the share of the batch that only checks each grid (its figures are reported)


@dataclass
class CalibrationProblem:
    model: torch.nn.Module  # the Precond: its schedule gives sigma_min, sigma_max, sigma_data
    denoiser: Callable  # as the recipe's ``sample`` calls it by default
    shape: tuple[int, ...]  # one batch, batch first
    cond: torch.Tensor | None  # one row per draw, or None
    sigma_data: float | None  # what the recipe passes to default_sigmas


def calibrate_run(run_dir: str | Path, problem: CalibrationProblem, steps: list[int], sampler: str, *,
                  evals_per_step: int = 60, seed: int = 0, log: Callable[[str], None] = print) -> list[dict]:
    """Calibrate ``sampler`` for each step count in ``steps`` and save the grids in ``run_dir``.
    Returns, per step count, the RMS distance to the converged solution on the calibration
    draws the optimiser never saw (the last HOLDOUT share), on the spacing rule's grid and on
    the calibrated one."""
    if get_sampler(sampler).stochastic:
        raise ValueError(f"sampler {sampler!r} is stochastic; calibrate a deterministic one (unipc, dpmpp_3m, ...)")
    if not steps or min(steps) < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    schedule = problem.model.schedule
    device = next(problem.model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    noise = (torch.randn(problem.shape, generator=generator) * schedule.sigma_max).to(device)
    cond = None if problem.cond is None else problem.cond.to(device)
    options = {} if cond is None else {"cond": cond}
    start = time.perf_counter()
    reference = reference_solution(problem.denoiser, noise, schedule.sigma_max, schedule.sigma_min,
                                   REFERENCE_STEPS, **options)
    log(f"reference: ipndm, {REFERENCE_STEPS} steps from {len(noise)} draws ({time.perf_counter() - start:.0f} s)")
    unseen = held_back(len(noise), HOLDOUT)

    def unseen_error(grid):
        return grid_error(problem.denoiser, noise, reference, grid, sampler, unseen, **options)

    results = []
    for n in steps:
        start = time.perf_counter()
        starts = starting_grids(schedule, n, sampler, problem.sigma_data)
        rule = starts[0]
        grid = calibrate_sigmas(problem.denoiser, noise, n, sampler, sigma_min=schedule.sigma_min,
                                sigma_max=schedule.sigma_max, candidates=starts,
                                reference=reference, evals=evals_per_step * n, holdout=HOLDOUT, **options)
        info = {"rms_default": unseen_error(rule), "rms_calibrated": unseen_error(grid), "draws": len(noise),
                "evals": evals_per_step * n, "seed": seed}
        save_grid(run_dir, sampler, n, grid, info)
        results.append({"steps": n, "sigmas": grid.tolist(), **info})
        log(f"{sampler}, {n} steps: RMS to the converged ODE on unseen draws {info['rms_default']:.3g} (default grid)"
            f" -> {info['rms_calibrated']:.3g} (calibrated), {time.perf_counter() - start:.0f} s; sigmas "
            + ", ".join(f"{v:.3g}" for v in grid.tolist()))
    return results
