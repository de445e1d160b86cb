"""calibrate_sigmas: grids decided by the model, checked on an exact mixture and on fresh noise."""

import pytest
import torch

from multidiff.core.gmm import GaussianMixture
from multidiff.core.samplers import default_sigmas, sample
from multidiff.core.samplers.calibrate import (calibrate_sigmas, grid_to_params, nelder_mead, params_to_grid,
                                               reference_solution, starting_grids)
from multidiff.core.schedules import EDM, logsnr_sigmas


def test_params_map_to_valid_grids_and_back():
    sigma_max, sigma_min, gap = 80.0, 0.002, 0.02
    g = torch.Generator().manual_seed(0)
    for steps in (2, 5, 13):
        for _ in range(20):
            grid = params_to_grid((torch.randn(steps, generator=g, dtype=torch.float64) * 4).tolist(),
                                  sigma_max, sigma_min, gap)
            assert len(grid) == steps + 1 and grid[-1] == 0 and grid[0] == sigma_max
            logs = grid[:-1].log()
            assert (logs[:-1] - logs[1:] >= gap - 1e-12).all()
            assert grid[-2] >= sigma_min * (1 - 1e-12)
        start = logsnr_sigmas(steps, 0.01, sigma_max)
        back = params_to_grid(grid_to_params(start, sigma_min, gap), sigma_max, sigma_min, gap)
        torch.testing.assert_close(back, start, rtol=1e-9, atol=0)


def test_nelder_mead_finds_the_minimum_of_a_curved_valley():
    def rosenbrock(p):
        return sum(100 * (b - a * a) ** 2 + (1 - a) ** 2 for a, b in zip(p[:-1], p[1:]))

    best, value, calls = nelder_mead(rosenbrock, [-1.2, 1.0, 0.5], evals=4000, step=0.5)
    assert calls <= 4000 + 4
    assert value < 1e-8 and max(abs(b - 1) for b in best) < 1e-3
    assert rosenbrock([-1.2, 1.0, 0.5]) > 10  # it moved


def far_modes():
    # two nearly point-like modes far apart: the per-dimension data scale sets a band
    # that ends above their spread, so the default grid's last step is too coarse
    means = torch.tensor([[3.0, 2.0], [-2.5, -2.5]], dtype=torch.float64)
    return GaussianMixture(torch.tensor([0.4, 0.6]), means, torch.full((2, 2), 0.03))


def test_calibrated_grid_beats_the_default_on_noise_it_never_saw():
    gmm = far_modes()
    schedule = EDM(sigma_data=2.8)
    steps, sigma_max, sigma_min = 6, schedule.sigma_max, schedule.sigma_min
    g = torch.Generator().manual_seed(1)
    calib = torch.randn(512, 2, generator=g, dtype=torch.float64) * sigma_max
    fresh = torch.randn(512, 2, generator=g, dtype=torch.float64) * sigma_max
    default = default_sigmas(schedule, steps, "unipc")
    grid = calibrate_sigmas(gmm, calib, steps, "unipc", sigma_min=sigma_min, sigma_max=sigma_max,
                            candidates=[default], evals=300)
    assert len(grid) == steps + 1 and grid[-1] == 0 and (grid[:-1] >= sigma_min).all()
    ref = reference_solution(gmm, fresh, sigma_max, 1e-4, 800)

    def err(s):
        return (sample(gmm, fresh.clone(), s, method="unipc") - ref).pow(2).sum(1).mean().sqrt().item()

    assert err(grid) < 0.5 * err(default), (err(grid), err(default))


def test_the_returned_grid_is_no_worse_than_any_start_on_the_calibration_batch():
    gmm = GaussianMixture(torch.ones(2), torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.5, 0.0]]), torch.full((2, 3), 0.3))
    noise = torch.randn(256, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 80.0
    ref = reference_solution(gmm, noise, 80.0, 1e-3, 400)
    starts = [logsnr_sigmas(5, 1e-3, 80.0), EDM().sigmas(5)]
    grid = calibrate_sigmas(gmm, noise, 5, "dpmpp_3m", sigma_min=1e-3, sigma_max=80.0, candidates=starts[1:],
                            reference=ref, evals=200)

    def err(s):
        return (sample(gmm, noise.clone(), s, method="dpmpp_3m") - ref).pow(2).sum(1).mean().sqrt().item()

    assert err(grid) < 0.9 * min(err(s) for s in starts)


def test_bad_calibration_settings_are_named():
    gmm = far_modes()
    noise = torch.randn(8, 2, dtype=torch.float64) * 80
    with pytest.raises(ValueError, match="do not fit"):
        calibrate_sigmas(gmm, noise, 500, sigma_min=1.0, sigma_max=80.0)
    with pytest.raises(ValueError, match="sigma_min"):
        calibrate_sigmas(gmm, noise, 4, sigma_min=0.0, sigma_max=80.0)
    with pytest.raises(ValueError, match="candidate grid"):
        calibrate_sigmas(gmm, noise, 4, sigma_min=0.01, sigma_max=80.0, candidates=[logsnr_sigmas(6, 0.01, 80.0)],
                         reference=noise)
    with pytest.raises(ValueError, match="holdout"):
        calibrate_sigmas(gmm, noise, 4, sigma_min=0.01, sigma_max=80.0, holdout=1.0)
    with pytest.raises(ValueError, match="one row per draw"):
        calibrate_sigmas(lambda x, s, c: gmm(x, s), noise, 4, sigma_min=0.01, sigma_max=80.0, reference=noise,
                         cond=torch.zeros(3))
    with pytest.raises(ValueError, match="unknown sampler|no sampler|sampler"):
        calibrate_sigmas(gmm, noise, 4, "nope", sigma_min=0.01, sigma_max=80.0)


def test_calibration_starts_from_the_rule_even_on_a_calibrated_schedule():
    """A run calibrated a second time starts from the spacing rule, Karras's grid and the rule for
    wider data, not from the grid it saved the first time (which ``default_sigmas`` returns)."""
    schedule = EDM(sigma_data=0.5)
    rule = default_sigmas(schedule, 6, "unipc", sigma_data=0.3)
    saved = logsnr_sigmas(6, schedule.sigma_min, schedule.sigma_max)
    schedule.grids = {("unipc", 6): saved}
    assert torch.equal(default_sigmas(schedule, 6, "unipc", sigma_data=0.3), saved)
    starts = starting_grids(schedule, 6, "unipc", 0.3)
    assert torch.equal(starts[0], rule) and not torch.equal(starts[0], saved)
    assert torch.equal(starts[1], schedule.sigmas(6, "karras"))
    # the third is placed for data four times wider: its band, and so its steps, reach higher
    assert torch.equal(starts[2], schedule.sigmas(6, "logsnr_jump", sigma_data=1.2))
    assert starts[2][1] > rule[1]
