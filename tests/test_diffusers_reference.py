"""Agreement with diffusers' schedulers where the formulas coincide.

The model handed to diffusers is the exact Gaussian-mixture denoiser written
as an epsilon-prediction in VP coordinates: ``x_ve = x_vp * sqrt(1 + sigma^2)``,
``eps = (x_ve - D(x_ve, sigma)) / sigma``. Where diffusers keeps its own
float32 tables they are replaced by VPLinear's float64 ``alpha_bar`` so the
comparisons can be tight.
"""

from __future__ import annotations

import math

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from multidiff.core.gmm import example_mixture  # noqa: E402
from multidiff.core.samplers import sample  # noqa: E402
from multidiff.core.schedules import VPLinear  # noqa: E402

pytestmark = pytest.mark.reference

BETAS = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")


def _noise(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _eps_model(gmm, sigma: float, x_vp: torch.Tensor) -> torch.Tensor:
    x_ve = x_vp * math.sqrt(1.0 + sigma**2)
    denoised = gmm(x_ve, torch.full((x_ve.shape[0],), sigma, dtype=torch.float64))
    return (x_ve - denoised) / sigma


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("steps", [4, 10, 50])
def test_ddim_matches_diffusers_ddim_trailing(steps):
    """multidiff ``ddim`` (eta = 0) on VPLinear's trailing sigmas == DDIMScheduler(trailing)."""
    schedule, gmm = VPLinear(), example_mixture(dim=4, num_components=3, seed=0)
    sched = diffusers.DDIMScheduler(**BETAS, clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing")
    sched.alphas_cumprod = schedule.alpha_bar.clone()
    sched.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    sched.set_timesteps(steps)

    sigmas = schedule.sigmas(steps, "trailing")
    assert torch.equal(sigmas[:-1], schedule.sigma_at(sched.timesteps.double()))

    z = _noise((64, 4), seed=3)
    x_vp = z.clone()
    for t in sched.timesteps:
        eps = _eps_model(gmm, float(schedule.sigma_at(t.double())), x_vp)
        x_vp = sched.step(eps, t, x_vp, eta=0.0).prev_sample
    ours = sample(gmm, z * math.sqrt(1.0 + sigmas[0].item() ** 2), sigmas, method="ddim", eta=0.0)

    assert _max_rel(ours, x_vp) < 1e-10
    # the check has teeth: one step fewer moves the answer by far more than the tolerance
    coarser = sample(gmm, z * math.sqrt(1.0 + sigmas[0].item() ** 2), schedule.sigmas(steps - 1, "trailing"),
                     method="ddim")
    assert _max_rel(coarser, x_vp) > 1e-4


def _ddpm_pair(t: int):
    schedule = VPLinear()
    sched = diffusers.DDPMScheduler(**BETAS, clip_sample=False, variance_type="fixed_small")
    sched.set_timesteps(10)  # leading: 900, 800, ..., 0
    sched.alphas_cumprod = schedule.alpha_bar.clone()
    sched.one = torch.tensor(1.0, dtype=torch.float64)
    t_prev = int(sched.previous_timestep(t))
    return schedule, sched, t_prev


@pytest.mark.parametrize("t", [500, 100])
def test_ddpm_step_matches_diffusers_with_shared_noise(t):
    """Same x_t, same model, same N(0, I) draw: one multidiff ``ddpm`` step == DDPMScheduler.step."""
    schedule, sched, t_prev = _ddpm_pair(t)
    gmm = example_mixture(dim=4, num_components=3, seed=1)
    sigma, sigma_prev = (float(schedule.sigma_at(float(s))) for s in (t, t_prev))
    x_vp = _noise((256, 4), seed=5) * 1.3

    theirs = sched.step(_eps_model(gmm, sigma, x_vp), t, x_vp, generator=torch.Generator().manual_seed(11)).prev_sample
    ours_ve = sample(gmm, x_vp * math.sqrt(1 + sigma**2), torch.tensor([sigma, sigma_prev], dtype=torch.float64),
                     method="ddpm", generator=torch.Generator().manual_seed(11))
    ours = ours_ve / math.sqrt(1 + sigma_prev**2)
    assert _max_rel(ours, theirs) < 1e-10


@pytest.mark.parametrize("t", [500, 100])
def test_ddpm_step_posterior_mean_and_std(t):
    """Many independent draws from one x_t: both libraries' empirical mean and std
    match the DDPM posterior q(x_{t-1} | x_t, x0) (Ho et al. 2020, Eqs. 6-7)."""
    schedule, sched, t_prev = _ddpm_pair(t)
    gmm = example_mixture(dim=4, num_components=3, seed=1)
    ab, ab_prev = schedule.alpha_bar[t].item(), schedule.alpha_bar[t_prev].item()
    sigma, sigma_prev = (float(schedule.sigma_at(float(s))) for s in (t, t_prev))
    draws = 40_000
    x_vp = (_noise((1, 4), seed=7) * 1.3).expand(draws, 4).contiguous()  # one x_t, many draws

    # Eq. 7 in VP coordinates, written out independently of both implementations
    beta = 1 - ab / ab_prev
    x0 = gmm(x_vp[:1] * math.sqrt(1 + sigma**2), torch.tensor([sigma], dtype=torch.float64))
    mean = (math.sqrt(ab_prev) * beta / (1 - ab)) * x0 + (math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)) * x_vp[:1]
    std = math.sqrt((1 - ab_prev) / (1 - ab) * beta)

    theirs = sched.step(_eps_model(gmm, sigma, x_vp), t, x_vp, generator=torch.Generator().manual_seed(1)).prev_sample
    ours = sample(gmm, x_vp * math.sqrt(1 + sigma**2), torch.tensor([sigma, sigma_prev], dtype=torch.float64),
                  method="ddpm", generator=torch.Generator().manual_seed(2)) / math.sqrt(1 + sigma_prev**2)

    for draws_xy in (ours, theirs):
        # 5 standard errors of the mean; 2 % on the std (its standard error here is 0.35 %)
        assert ((draws_xy.mean(0) - mean[0]).abs() < 5 * std / math.sqrt(draws)).all()
        assert ((draws_xy.std(0) / std - 1).abs() < 0.02).all()
    # teeth: the "fixed_large" variance beta_t differs from the posterior's by more than the tolerance
    assert abs(math.sqrt(beta) / std - 1) > 0.05


def _run_dpmsolver_multistep(gmm, karras: bool, **options):
    """DPMSolverMultistepScheduler (DPM-Solver++, 10 steps to sigma 0) on the mixture from seeded
    noise: (its output, its sigmas (11, ending with 0), the VE start point for ours)."""
    sched = diffusers.DPMSolverMultistepScheduler(**BETAS, algorithm_type="dpmsolver++", final_sigmas_type="zero",
                                                  use_karras_sigmas=karras, **options)
    sched.set_timesteps(10)
    sigmas = sched.sigmas.double()
    z = _noise((64, 4), seed=9)
    x_vp = z.clone()
    for i, t in enumerate(sched.timesteps):
        x_vp = sched.step(_eps_model(gmm, sigmas[i].item(), x_vp), t, x_vp).prev_sample
    return x_vp, sigmas, z * math.sqrt(1.0 + sigmas[0].item() ** 2)


@pytest.mark.parametrize("karras", [False, True])
def test_dpmpp_2m_matches_diffusers(karras):
    """DPM-Solver++(2M) on identical sigmas: multidiff ``dpmpp_2m`` == DPMSolverMultistepScheduler.

    diffusers keeps its sigmas and the state in float32, so agreement is to
    float32 precision; the first-order method on the same sigmas differs by
    orders of magnitude more. diffusers ends with the paper's plain denoise, so
    ours runs with ``final_step="denoise"`` (its default Adams final step is a
    deliberate improvement, benchmarked in docs/benchmarks.md)."""
    gmm = example_mixture(dim=4, num_components=3, seed=2)
    x_vp, sigmas, x_T = _run_dpmsolver_multistep(gmm, karras, solver_order=2)
    ours = sample(gmm, x_T, sigmas, method="dpmpp_2m", final_step="denoise")
    first_order = sample(gmm, x_T, sigmas, method="euler")

    assert _max_rel(ours, x_vp) < 1e-5
    assert _max_rel(first_order, x_vp) > 1e-3


@pytest.mark.parametrize("karras", [False, True])
def test_dpmpp_3m_dpmsolver_variant_matches_diffusers(karras):
    """DPM-Solver++(3M) as diffusers writes it: multidiff ``dpmpp_3m(variant="dpmsolver")`` ==
    DPMSolverMultistepScheduler(solver_order=3), to float32 precision; the default ``"exact"``
    variant, which integrates the same quadratic interpolant exactly, differs by far more."""
    gmm = example_mixture(dim=4, num_components=3, seed=2)
    x_vp, sigmas, x_T = _run_dpmsolver_multistep(gmm, karras, solver_order=3, lower_order_final=False)
    ours = sample(gmm, x_T, sigmas, method="dpmpp_3m", variant="dpmsolver", final_step="denoise")
    exact = sample(gmm, x_T, sigmas, method="dpmpp_3m", final_step="denoise")

    assert _max_rel(ours, x_vp) < 1e-5
    assert _max_rel(exact, x_vp) > 1e-3


def test_heun_matches_diffusers_heun():
    """EDM Heun (no churn) on identical sigmas: multidiff ``heun`` == HeunDiscreteScheduler."""
    gmm = example_mixture(dim=4, num_components=3, seed=2)
    sched = diffusers.HeunDiscreteScheduler(**BETAS, use_karras_sigmas=True)
    sched.set_timesteps(6)
    sigmas = sched.sigmas.double()  # (s0, s1, s1, ..., s5, s5, 0): interleaved for the two stages
    distinct = torch.cat([sigmas[:1], sigmas[1:-1:2], sigmas[-1:]])
    z = _noise((64, 4), seed=4)

    x = z * math.sqrt(1.0 + sigmas[0].item() ** 2)
    x_ve = x.clone()
    for i, t in enumerate(sched.timesteps):
        x_vp = sched.scale_model_input(x_ve, t)
        x_ve = sched.step(_eps_model(gmm, sigmas[i].item(), x_vp), t, x_ve).prev_sample
    ours = sample(gmm, x, distinct, method="heun")

    assert len(sched.timesteps) == 2 * 6 - 1
    assert _max_rel(ours, x_ve) < 1e-5
    assert _max_rel(sample(gmm, x, distinct, method="euler"), x_ve) > 1e-3


@pytest.mark.parametrize("solver_type,order,lower_order_final", [("bh2", 2, True), ("bh2", 3, False),
                                                                  ("bh1", 3, True), ("bh1", 2, False)])
def test_unipc_matches_diffusers_unipc(solver_type, order, lower_order_final):
    """UniPC on identical sigmas: multidiff ``unipc(variant=solver_type, order=order,
    lower_order_final=...)`` == UniPCMultistepScheduler, step for step, to float32 precision.
    diffusers' last step here ends at its last sigma (final_sigmas_type="sigma_min"), so ours runs
    on its sigmas without the 0. The other B(h) differs by far more (it matters in the two-node
    systems: the order-2 predictor and the corrector of order-1 steps)."""
    gmm = example_mixture(dim=4, num_components=3, seed=2)
    sched = diffusers.UniPCMultistepScheduler(**BETAS, solver_order=order, solver_type=solver_type,
                                              lower_order_final=lower_order_final, final_sigmas_type="sigma_min")
    sched.set_timesteps(8)
    sigmas = sched.sigmas.double()  # 8 sigmas of the timesteps, then the last one (timestep 0's)
    z = _noise((64, 4), seed=6)
    x_vp = z.clone()
    for i, t in enumerate(sched.timesteps):
        x_vp = sched.step(_eps_model(gmm, sigmas[i].item(), x_vp), t, x_vp).prev_sample
    theirs = x_vp * math.sqrt(1.0 + sigmas[-1].item() ** 2)  # in VE coordinates, as ours
    x_T = z * math.sqrt(1.0 + sigmas[0].item() ** 2)
    ours = sample(gmm, x_T, sigmas, method="unipc", variant=solver_type, order=order,
                  lower_order_final=lower_order_final)
    other = sample(gmm, x_T, sigmas, method="unipc", variant="bh1" if solver_type == "bh2" else "bh2", order=order,
                   lower_order_final=lower_order_final)
    assert _max_rel(ours, theirs) < 1e-5
    assert _max_rel(other, theirs) > 1e-3
    if lower_order_final:  # teeth: the option changes the last steps by far more than the tolerance
        assert _max_rel(sample(gmm, x_T, sigmas, method="unipc", variant=solver_type, order=order), theirs) > 1e-3
