"""Samplers against the closed-form Gaussian-mixture denoiser: no training."""

import math

import pytest
import torch

from multidiff.core.samplers import SAMPLERS, sample
from multidiff.core.schedules import EDM, VPLinear, logsnr_sigmas

DETERMINISTIC = [m for m, info in SAMPLERS.items() if not info.stochastic]
STOCHASTIC = [m for m, info in SAMPLERS.items() if info.stochastic]

SIGMA_MAX, SIGMA_MIN = 20.0, 0.1


def _steps_to(n):
    """n steps from SIGMA_MAX to SIGMA_MIN (no final jump to 0, so the solver's own order shows)."""
    return logsnr_sigmas(n + 1, SIGMA_MIN, SIGMA_MAX)[:-1]


@pytest.fixture(scope="module")
def ode_problem(mixture3d):
    x_start = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * SIGMA_MAX
    reference = sample(mixture3d, x_start, _steps_to(2000), "ipndm")
    finer = sample(mixture3d, x_start, _steps_to(4000), "ipndm")
    # converged to rounding level, far below the smallest error measured below
    assert (reference - finer).abs().max() < 1e-8
    return x_start, reference


# Expected order and the step counts it is measured at. Multistep solvers
# start with lower-order steps (as DPM-Solver++ and iPNDM do), whose O(h^2)
# local error caps the asymptotic order at 2 far out (beyond ~500 steps
# here); the range tested is the practical one, where the design order shows.
ORDERS = {"euler": (1, [16, 32, 64]), "ddim": (1, [16, 32, 64]), "heun": (2, [16, 32, 64]),
          "dpmpp_2m": (2, [16, 32, 64]), "dpmpp_3m": (3, [32, 64, 128]), "unipc": (3, [32, 64, 128]),
          "ipndm": (4, [32, 64, 128])}


def test_every_deterministic_sampler_has_an_order_test():
    assert set(DETERMINISTIC) == set(ORDERS)


@pytest.mark.parametrize("method", sorted(ORDERS))
def test_deterministic_convergence_order(method, mixture3d, ode_problem):
    x_start, reference = ode_problem
    order, steps = ORDERS[method]
    options = {"order": 2} if method == "unipc" else {}  # its default order rises with the step count
    errs = [(sample(mixture3d, x_start, _steps_to(n), method, **options) - reference).abs().max().item()
            for n in steps]
    rates = [math.log2(errs[i] / errs[i + 1]) for i in range(len(errs) - 1)]
    # halving the step divides the error by ~2^order
    assert all(order - 0.5 < r < order + 1.0 for r in rates), (errs, rates)


def test_dpmpp_3m_dpmsolver_variant_converges_at_order_2(mixture3d, ode_problem):
    """The DPM-Solver++(3M) update of its authors' code (and diffusers') weighs the quadratic term
    with 1/2 - phi_2 / h ~ h / 6 (its code's -phi_3) where the exact integral of the same
    interpolant has ~ h / 3: its steps are off by O(h^3), so it converges at order 2, where the
    exact variant keeps order 3 (until its first-order start caps it, beyond ~500 steps here,
    see ORDERS)."""
    x_start, reference = ode_problem
    steps = [64, 128, 256]

    def rates(variant):
        errs = [(sample(mixture3d, x_start, _steps_to(n), "dpmpp_3m", variant=variant) - reference).abs().max().item()
                for n in steps]
        return [math.log2(errs[i] / errs[i + 1]) for i in range(len(errs) - 1)]

    assert all(1.5 < r < 2.5 for r in rates("dpmsolver"))
    assert all(r > 2.7 for r in rates("exact"))


def test_ddim_eta0_equals_euler_in_sigma(mixture3d):
    x = torch.randn(32, 3, dtype=torch.float64) * 80
    sig = EDM().sigmas(25)
    assert torch.allclose(sample(mixture3d, x, sig, "ddim"), sample(mixture3d, x, sig, "euler"), atol=1e-12)


def test_ddpm_equals_ancestral_eta1(mixture3d):
    x = torch.randn(32, 3, dtype=torch.float64) * 80
    sig = EDM().sigmas(25)
    runs = [sample(mixture3d, x, sig, m, generator=torch.Generator().manual_seed(7), **kw)
            for m, kw in [("ddpm", {}), ("ddim", {"eta": 1.0}), ("euler_ancestral", {})]]
    assert torch.allclose(runs[0], runs[1], atol=1e-10) and torch.allclose(runs[0], runs[2], atol=1e-10)


def test_ddpm_step_is_the_ddpm_posterior(mixture3d):
    """Ho et al. 2020, Eqs. 6-7 in VP coordinates: mean coefficients and beta-tilde."""
    sch = VPLinear()
    t = 400
    ab_t, ab_prev = sch.alpha_bar[t], sch.alpha_bar[t - 1]
    beta_t = 1 - ab_t / ab_prev
    x_vp = torch.randn(16, 3, dtype=torch.float64)
    sigma_t, sigma_prev = sch.train_sigmas[t], sch.train_sigmas[t - 1]
    x_ve = x_vp / ab_t.sqrt()
    x0_hat = mixture3d(x_ve, sigma_t.expand(16))
    mean = ab_prev.sqrt() * beta_t / (1 - ab_t) * x0_hat + (1 - beta_t).sqrt() * (1 - ab_prev) / (1 - ab_t) * x_vp
    var = (1 - ab_prev) / (1 - ab_t) * beta_t
    z = torch.randn(16, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected_vp = mean + var.sqrt() * z
    out = sample(mixture3d, x_ve, torch.stack([sigma_t, sigma_prev]), "ddpm", generator=torch.Generator().manual_seed(3))
    assert torch.allclose(out * ab_prev.sqrt(), expected_vp, atol=1e-10)


def _mixture_stats(g, x):
    k = g.responsibilities(x).argmax(1)
    w = torch.bincount(k, minlength=g.num_components).double() / len(x)
    means = torch.stack([x[k == j].mean(0) for j in range(g.num_components)])
    var = torch.stack([x[k == j].var(0) for j in range(g.num_components)])
    return w, means, var


STOCHASTIC_RUNS = {"ddpm": (300, {}), "euler_ancestral": (300, {}), "dpmpp_2m_sde": (150, {}),
                   "langevin_pc": (200, {}), "annealed_langevin": (200, {}), "heun_churn": (100, {"s_churn": 40})}


def test_every_stochastic_sampler_has_a_distribution_test():
    assert set(STOCHASTIC) <= set(STOCHASTIC_RUNS)


@pytest.mark.parametrize("name", sorted(STOCHASTIC_RUNS))
def test_stochastic_sampler_recovers_the_mixture(name, mixture2d):
    """Weights, means and per-component variances match the true mixture within
    statistical tolerance (the same estimator on N true samples sets the scale)."""
    n = 8000
    steps, kw = STOCHASTIC_RUNS[name]
    method = "heun" if name == "heun_churn" else name
    sch = EDM()
    sig = sch.sigmas(steps, SAMPLERS[method].spacing)
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(n, 2, generator=gen, dtype=torch.float64) * sig[0]
    out = sample(mixture2d, x, sig, method, generator=gen, **kw)
    w, means, var = _mixture_stats(mixture2d, out)
    w_true, means_true, var_true = _mixture_stats(mixture2d, mixture2d.sample(400_000, torch.Generator().manual_seed(0)))
    # 5 standard errors: weight ~ sqrt(w(1-w)/n); mean ~ sqrt(var/(w n)); variance ~ sqrt(2/(w n)) relative
    w_tol = 5 * (w_true * (1 - w_true) / n).sqrt()
    assert ((w - w_true).abs() < w_tol).all(), (w, w_true)
    m_tol = 5 * (var_true / (w_true[:, None] * n)).sqrt()
    assert ((means - means_true).abs() < m_tol).all(), (means, means_true)
    v_tol = 5 * (2 / (w_true[:, None] * n)).sqrt() + 0.05  # + 5% for discretisation bias at finite steps
    assert (((var - var_true) / var_true).abs() < v_tol).all(), (var, var_true)


@pytest.mark.parametrize("method", sorted(SAMPLERS))
def test_reproducible_bit_for_bit(method, mixture3d):
    x = torch.randn(8, 3) * 80
    sig = EDM().sigmas(6)
    a = sample(mixture3d, x, sig, method, generator=torch.Generator().manual_seed(1))
    b = sample(mixture3d, x, sig, method, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.dtype == x.dtype and torch.isfinite(a).all()
    if SAMPLERS[method].stochastic:
        c = sample(mixture3d, x, sig, method, generator=torch.Generator().manual_seed(2))
        assert not torch.equal(a, c)


@pytest.mark.parametrize("method", sorted(SAMPLERS))
def test_nfe_and_callback(method, mixture3d):
    calls, seen = [], []

    def counting(x, sigma, cond=None):
        calls.append(sigma[0].item())
        return mixture3d(x, sigma)

    steps = 7
    sig = EDM().sigmas(steps)
    sample(counting, torch.randn(4, 3) * 80, sig, method, generator=torch.Generator().manual_seed(0),
           callback=seen.append)
    assert len(calls) == SAMPLERS[method].nfe(steps)
    assert [s["i"] for s in seen] == list(range(steps))
    assert all(s["sigma"] > s["sigma_next"] for s in seen)
    assert set(seen[0]) == {"i", "x", "sigma", "sigma_next", "denoised"}


def test_shape_agnostic_and_cond_passthrough():
    """The core reads only x.shape[0]; cond reaches the denoiser untouched."""
    got = []

    def denoiser(x, sigma, cond=None):
        got.append(cond)
        assert sigma.shape == (x.shape[0],)
        return 0.5 * x / (1 + sigma.view(-1, 1, 1, 1))

    x = torch.randn(2, 3, 4, 5) * 80
    out = sample(denoiser, x, EDM().sigmas(4), "dpmpp_3m", cond={"label": 3})
    assert out.shape == x.shape and all(c == {"label": 3} for c in got)


def test_errors_name_the_problem(mixture3d):
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="unknown sampler 'dpm_fast'.*euler"):
        sample(mixture3d, x, EDM().sigmas(4), "dpm_fast")
    with pytest.raises(ValueError, match=r"no option\(s\) \['churn'\]"):
        sample(mixture3d, x, EDM().sigmas(4), "heun", churn=1.0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample(mixture3d, x, torch.tensor([1.0, 2.0, 0.0]), "euler")
    with pytest.raises(TypeError, match="floating-point"):
        sample(mixture3d, torch.ones(4, 3, dtype=torch.long), EDM().sigmas(4), "euler")


def test_default_sampler_converges_on_its_default_grid(mixture3d):
    """The default sampler on ``default_sigmas`` approaches the exact ODE solution as
    steps grow, with no error floor (a fixed first jump would leave one), at about
    its order once the steps are fine. The solution it converges to is EDM's: the
    ODE down to the grid's last sigma, then the denoised estimate (``final_step="auto"``
    denoises from sigma_min = 0.002); with ``final_step="adams"`` it is the ODE all
    the way to 0."""
    from multidiff.core.samplers import DEFAULT_METHOD, default_sigmas
    from multidiff.core.schedules import logsnr_sigmas as grid

    schedule = EDM(sigma_data=math.sqrt(torch.diagonal(mixture3d.covariance()).mean().item()))
    x_start = torch.randn(64, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * schedule.sigma_max
    to_zero = sample(mixture3d, x_start, grid(4000, 1e-6, schedule.sigma_max), "ipndm")
    # converged far below the smallest error measured below (a few 1e-6)
    assert (to_zero - sample(mixture3d, x_start, grid(2000, 1e-6, schedule.sigma_max), "ipndm")).abs().max() < 1e-7
    fine = grid(4000, schedule.sigma_min, schedule.sigma_max)
    edm = mixture3d(sample(mixture3d, x_start, fine[:-1], "ipndm"), fine[-2:-1].expand(64))  # ODE to sigma_min, then D
    half = grid(2000, schedule.sigma_min, schedule.sigma_max)
    assert (edm - mixture3d(sample(mixture3d, x_start, half[:-1], "ipndm"), half[-2:-1].expand(64))).abs().max() < 1e-7
    assert (edm - to_zero).abs().max() > 1e-6  # the two solutions differ by more than the errors tested below
    steps = [8, 16, 32, 64, 128, 256]
    order = SAMPLERS[DEFAULT_METHOD].order
    for reference, options in ((edm, {}), (to_zero, {"final_step": "adams"})):
        errs = [(sample(mixture3d, x_start, default_sigmas(schedule, n, DEFAULT_METHOD), **options)
                 - reference).abs().max().item() for n in steps]
        assert all(b < a for a, b in zip(errs, errs[1:])), (options, errs)
        assert errs[-1] < 1e-3 * errs[0], (options, errs)
        assert math.log2(errs[-2] / errs[-1]) > order - 1, (options, errs)


def test_final_step_auto_denoises_only_from_tiny_sigmas(mixture3d):
    """``final_step="auto"`` is the Adams ending from a last sigma of FINAL_DENOISE_BELOW or more
    and ``x = D`` below it, for every multistep sampler with an extrapolated last step; unknown
    names are refused."""
    from multidiff.core.samplers.multistep import FINAL_DENOISE_BELOW

    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for method in ("unipc", "dpmpp_2m", "dpmpp_3m", "ipndm"):
        for last, expect in ((2 * FINAL_DENOISE_BELOW, "adams"), (FINAL_DENOISE_BELOW / 2, "denoise")):
            sigmas = torch.cat([torch.exp(torch.linspace(math.log(80.0), math.log(last), 12, dtype=torch.float64)),
                                torch.zeros(1, dtype=torch.float64)])
            auto = sample(mixture3d, x * 80.0, sigmas, method)
            other = "denoise" if expect == "adams" else "adams"
            assert torch.equal(auto, sample(mixture3d, x * 80.0, sigmas, method, final_step=expect)), (method, last)
            assert not torch.equal(auto, sample(mixture3d, x * 80.0, sigmas, method, final_step=other)), (method, last)
        with pytest.raises(ValueError, match="final_step must be one of"):
            sample(mixture3d, x, sigmas, method, final_step="euler")


def test_unipc_default_order_rises_with_steps(mixture3d):
    """``order=None`` is order 2 below UNIPC_ORDER3_STEPS steps and order 3 from there."""
    from multidiff.core.samplers.multistep import UNIPC_ORDER3_STEPS as n

    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 80
    for steps, order in ((n - 1, 2), (n, 3)):
        sigmas = EDM().sigmas(steps)
        assert torch.equal(sample(mixture3d, x, sigmas, "unipc"), sample(mixture3d, x, sigmas, "unipc", order=order))
        assert not torch.equal(sample(mixture3d, x, sigmas, "unipc"),
                               sample(mixture3d, x, sigmas, "unipc", order=5 - order))
