import math

import pytest
import torch

from multidiff.core import schedules as S

ALL = [S.VPLinear(), S.VPCosine(), S.VPSqrt(), S.EDM(), S.LogLinear(), S.RectifiedFlow(),
       S.rescale_zero_terminal_snr(S.VPLinear())]


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("steps", [1, 2, 7, 50])
def test_sigmas_contract(schedule, steps):
    for spacing in schedule.spacings:
        sig = schedule.sigmas(steps, spacing)
        assert sig.dtype == torch.float64 and sig.shape == (steps + 1,)
        assert sig[-1].item() == 0.0
        assert (sig[1:] < sig[:-1]).all(), spacing
        assert sig[0] <= schedule.sigma_max * (1 + 1e-9) and sig[-2] >= schedule.sigma_min * (1 - 1e-9)


def test_conversions_round_trip():
    sigma = torch.logspace(-3, 3, 50, dtype=torch.float64)
    assert torch.allclose(S.alpha_bar_to_sigma(S.sigma_to_alpha_bar(sigma)), sigma, rtol=1e-10)
    assert torch.allclose(S.logsnr_to_sigma(S.sigma_to_logsnr(sigma)), sigma, rtol=1e-12)
    assert torch.allclose(S.vp_scale(sigma) ** 2, S.sigma_to_alpha_bar(sigma))
    assert torch.allclose(S.flow_t_to_sigma(S.sigma_to_flow_t(sigma)), sigma, rtol=1e-10)
    # logSNR is log(alpha_bar / (1 - alpha_bar))
    ab = S.sigma_to_alpha_bar(sigma)
    assert torch.allclose(S.sigma_to_logsnr(sigma), (ab / (1 - ab)).log(), rtol=1e-9, atol=1e-9)


def test_vp_linear_matches_ddpm_definition():
    sch = S.VPLinear(1e-4, 0.02, 1000)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    assert torch.allclose(sch.alpha_bar, torch.cumprod(1 - betas, 0))
    assert torch.allclose(sch.betas, betas)
    # sigma_t^2 = (1 - alpha_bar_t) / alpha_bar_t
    assert torch.allclose(sch.train_sigmas**2, (1 - sch.alpha_bar) / sch.alpha_bar)


def test_timestep_interpolation_inverts():
    sch = S.VPLinear()
    t = torch.tensor([0.0, 0.5, 10.25, 500.0, 998.9, 999.0], dtype=torch.float64)
    assert torch.allclose(sch.timestep(sch.sigma_at(t)), t, atol=1e-9)
    assert torch.allclose(sch.sigma_at(torch.arange(1000.0)), sch.train_sigmas)
    assert torch.allclose(sch.c_noise(sch.train_sigmas.float()[[3, 700]]), torch.tensor([3.0, 700.0]), atol=1e-3)


def test_discrete_spacings_follow_their_definitions():
    sch = S.VPLinear()
    trailing = sch.sigmas(10, "trailing")
    assert torch.allclose(sch.timestep(trailing[:-1]), torch.arange(999.0, 0, -100, dtype=torch.float64), atol=1e-6)
    leading = sch.sigmas(10, "leading")
    assert torch.allclose(sch.timestep(leading[:-1]), torch.arange(900.0, -1, -100, dtype=torch.float64), atol=1e-6)
    with pytest.raises(ValueError, match="steps <= num_train_steps"):
        sch.sigmas(1001, "trailing")


def test_karras_and_logsnr_spacing():
    k = S.karras_sigmas(5, 0.002, 80.0, rho=7.0)
    ramp = k[:-1] ** (1 / 7)
    assert torch.allclose(ramp[1:] - ramp[:-1], (ramp[1] - ramp[0]).expand(4))  # uniform in sigma^(1/rho)
    ls = S.logsnr_sigmas(6, 0.01, 10.0)[:-1].log()
    assert torch.allclose(ls[1:] - ls[:-1], (ls[1] - ls[0]).expand(5))


def test_cosine_and_sqrt_follow_their_alpha_bar():
    cos = S.VPCosine(1000)
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2 / math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    unclipped = slice(0, 900)  # the last betas are clipped at 0.999, as in the paper
    assert torch.allclose(cos.alpha_bar[unclipped], f[unclipped], rtol=1e-9)
    sq = S.VPSqrt(2000)
    t = torch.arange(1, 2001, dtype=torch.float64) / 2000
    assert torch.allclose(sq.alpha_bar[:1990], (1 - (t + 1e-4).sqrt())[:1990] / (1 - math.sqrt(1e-4)), rtol=1e-9)


def test_zero_terminal_snr_rescale():
    base = S.VPLinear()
    z = S.rescale_zero_terminal_snr(base)
    assert z.alpha_bar[0] == pytest.approx(base.alpha_bar[0].item(), rel=1e-12)
    assert z.alpha_bar[-1].item() == min(2.0**-24, z.alpha_bar[-2].item() / 4)
    assert z.sigma_max > 1e4  # effectively pure noise at the start
    # sqrt(alpha_bar) is an affine map of the original (Lin et al. 2023, Alg. 1)
    a, b = base.alpha_bar.sqrt()[:-1], z.alpha_bar.sqrt()[:-1]
    slope = (b[-1] - b[0]) / (a[-1] - a[0])
    assert torch.allclose(b, b[0] + slope * (a - a[0]), atol=1e-12)


def test_rectified_flow_is_ve_with_scale():
    sch = S.RectifiedFlow()
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    sigma = sch.sigma(t)
    x0, n = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    assert torch.allclose(sch.input_scale(sigma) * (x0 + sigma * n), (1 - t) * x0 + t * n)
    shifted = S.RectifiedFlow(shift=3.0)
    u = torch.tensor([0.2, 0.7], dtype=torch.float64)
    assert torch.allclose(shifted._unshift(shifted._shift(u)), u)
    assert (shifted._shift(u) > u).all()  # a shift > 1 moves time toward noise


def test_training_sigma_draws():
    g = torch.Generator().manual_seed(0)
    edm = S.EDM()
    log_sigma = edm.sample_sigmas(200_000, g).log()
    se = edm.p_std / math.sqrt(200_000)
    assert abs(log_sigma.mean().item() - edm.p_mean) < 5 * se
    assert abs(log_sigma.std().item() - edm.p_std) < 0.01
    vp = S.VPLinear()
    draws = vp.sample_sigmas(1000, g)
    assert set(draws.tolist()) <= set(vp.train_sigmas.tolist())
    for sch in (S.LogLinear(), S.RectifiedFlow()):
        d = sch.sample_sigmas(1000, g)
        assert (d >= sch.sigma_min * (1 - 1e-9)).all() and (d <= sch.sigma_max * (1 + 1e-9)).all()
    assert torch.equal(vp.sample_sigmas(5, torch.Generator().manual_seed(3)),
                       vp.sample_sigmas(5, torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_config_round_trip(schedule):
    import json
    rebuilt = S.schedule_from_config(json.loads(json.dumps(schedule.config())))
    assert type(rebuilt) is type(schedule)
    assert torch.allclose(rebuilt.sigmas(10), schedule.sigmas(10))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="positive integer"):
        S.EDM().sigmas(0)
    with pytest.raises(ValueError, match="unknown spacing 'cubic'"):
        S.EDM().sigmas(5, "cubic")
    with pytest.raises(ValueError, match="strictly decreasing"):
        S.check_sigmas(torch.tensor([1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="unknown schedule"):
        S.schedule_from_config({"name": "Nope"})
    with pytest.raises(ValueError, match="strictly decrease"):
        S.DiscreteVP(torch.tensor([0.5, 0.9]))


def test_logsnr_jump_spacing():
    """Log-SNR-uniform inside the band [sigma_lo, sigma_hi], fewer and longer steps above it."""
    sig = S.logsnr_jump_sigmas(10, 0.01, 157.0)
    assert sig[0] == 157.0 and sig[-1] == 0.0 and sig.shape == (11,)
    assert sig[-2].item() == pytest.approx(0.05)
    log_steps = (sig[:-2].log() - sig[1:-1].log())  # (9,), log sigma covered by each step
    in_band = sig[1:-1] < S.JUMP_SIGMA_HI
    band = log_steps[in_band & (sig[:-2] <= S.JUMP_SIGMA_HI)]
    assert torch.allclose(band, band[0].expand_as(band))
    assert log_steps[0] > 2 * band[0]  # the first step is a jump
    assert S.logsnr_jump_sigmas(40, 0.01, 157.0)[-2].item() < 0.05  # longer runs go lower
    assert S.logsnr_jump_sigmas(40, 0.1, 157.0)[-2].item() == pytest.approx(0.1)  # never below sigma_min
    # with many steps the jump has faded into Karras's grid
    last = S.JUMP_FADE_STEPS[1]
    for steps in (last, 2 * last):
        assert torch.allclose(S.logsnr_jump_sigmas(steps, 0.01, 157.0), S.karras_sigmas(steps, 0.01, 157.0))
    below, above = S.logsnr_jump_sigmas(last - 1, 0.01, 157.0), S.karras_sigmas(last - 1, 0.01, 157.0)
    assert not torch.allclose(below, above) and (below[1:] < below[:-1]).all()
    # a small sigma_max falls back to plain log-SNR spacing, still ending at 0
    assert torch.allclose(S.logsnr_jump_sigmas(4, 0.01, 2.0), S.logsnr_sigmas(4, 0.05, 2.0))
    assert torch.equal(S.logsnr_jump_sigmas(1, 0.01, 80.0), torch.tensor([80.0, 0.0], dtype=torch.float64))


def test_logsnr_jump_steps_all_shrink():
    """Every step, the first included, shrinks as steps grow, eventually like 1 / steps
    (no fixed jump that would cap convergence). The first step, where the warp is
    steepest, shrinks more slowly at first."""
    def longest(steps):  # the largest step in log sigma
        sig = S.logsnr_jump_sigmas(steps, 0.01, 157.0)
        return (sig[:-2].log() - sig[1:-1].log()).max().item()
    for n in (8, 32, 128):
        assert longest(2 * n) < 0.8 * longest(n)
    for n in (1024, 2048):
        assert longest(2 * n) / longest(n) == pytest.approx(0.5, rel=0.1)


def test_logsnr_jump_follows_the_data_scale():
    """Scaling the data (sigma_data) and the sigma range by c scales the grid by c."""
    for c in (0.25, 3.0):
        for steps in (5, 20):
            base = S.logsnr_jump_sigmas(steps, 0.002, 80.0, 0.5)
            assert torch.allclose(S.logsnr_jump_sigmas(steps, 0.002 * c, 80.0 * c, 0.5 * c), base * c, rtol=1e-12)
    # the schedule's sigma_data places the band; an explicit one overrides it
    edm = S.EDM(sigma_data=1.5)
    assert torch.equal(edm.sigmas(8, "logsnr_jump"), S.logsnr_jump_sigmas(8, 0.002, 80.0, 1.5))
    assert torch.equal(edm.sigmas(8, "logsnr_jump", sigma_data=0.25), S.logsnr_jump_sigmas(8, 0.002, 80.0, 0.25))
    assert not torch.equal(S.EDM(sigma_data=0.25).sigmas(8, "logsnr_jump"), edm.sigmas(8, "logsnr_jump"))


@pytest.mark.parametrize("schedule", [S.VPLinear(sigma_data=0.3), S.VPCosine(sigma_data=2.0), S.LogLinear(sigma_data=0.7),
                                      S.RectifiedFlow(sigma_data=0.4), S.EDM(sigma_data=0.2)],
                         ids=lambda s: type(s).__name__)
def test_sigma_data_survives_the_config_round_trip(schedule):
    import json
    rebuilt = S.schedule_from_config(json.loads(json.dumps(schedule.config())))
    assert rebuilt.sigma_data == schedule.sigma_data
    assert torch.equal(rebuilt.sigmas(10, "logsnr_jump"), schedule.sigmas(10, "logsnr_jump"))
