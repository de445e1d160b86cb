import pytest
import torch
from torch import nn

from multidiff.core import losses as L
from multidiff.core.precond import PRECONDITIONERS, EDMPrecond, EpsPrecond, make_precond
from multidiff.core.schedules import EDM, RectifiedFlow, VPLinear, vp_scale


class Fixed(nn.Module):
    """A backbone that returns a given tensor and records what it was fed."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x_in, c_noise, cond=None):
        self.seen = (x_in, c_noise, cond)
        return self.out


def _data(shape=(4, 3, 5)):
    x0 = torch.randn(shape, dtype=torch.float64)
    n = torch.randn(shape, dtype=torch.float64)
    sigma = torch.tensor([0.05, 0.7, 3.0, 40.0], dtype=torch.float64)
    return x0, n, sigma, x0 + sigma.view(-1, 1, 1) * n


def test_each_prediction_type_recovers_x0_from_its_paper_target():
    x0, n, sigma, x = _data()
    s = sigma.view(-1, 1, 1)
    a, s_vp = vp_scale(s), s * vp_scale(s)  # VP: x_vp = a x0 + s_vp n
    targets = {
        "eps": n,  # Ho et al. 2020
        "x0": x0,
        "v": a * n - s_vp * x0,  # Salimans & Ho 2022, Sec. 4
        "flow": n - x0,  # rectified-flow velocity
    }
    for name, target in targets.items():
        d = make_precond(name, Fixed(target), VPLinear())
        assert torch.allclose(d(x, sigma), x0, atol=1e-10), name


def test_backbone_sees_scaled_input_and_schedule_noise_conditioning():
    x0, n, sigma, x = _data()
    sch = VPLinear()
    bb = Fixed(n)
    EpsPrecond(bb, sch)(x, sigma, cond="label")
    x_in, c_noise, cond = bb.seen
    assert torch.allclose(x_in, x * vp_scale(sigma).view(-1, 1, 1))  # the VP sample
    assert torch.allclose(c_noise, sch.timestep(sigma))  # DDPM timesteps
    assert cond == "label"
    flow = RectifiedFlow()
    make_precond("flow", bb, flow)(x, sigma)
    t = sigma / (1 + sigma)
    assert torch.allclose(bb.seen[0], (1 - t).view(-1, 1, 1) * x0 + t.view(-1, 1, 1) * n)


def test_edm_preconditioning_gives_unit_variance_input_and_target():
    """Karras et al. 2022, App. B.6: c_in and c_out make the backbone's input and target unit variance."""
    sd = 0.5
    sigma = torch.tensor([0.01, 0.5, 5.0, 50.0], dtype=torch.float64)
    x0 = sd * torch.randn(4, 200_000, dtype=torch.float64)
    x = x0 + sigma[:, None] * torch.randn_like(x0)
    c_skip, c_out, c_in = EDMPrecond(Fixed(None), EDM(), sigma_data=sd).coefficients(sigma)
    assert torch.allclose((c_in[:, None] * x).var(dim=1), torch.ones(4, dtype=torch.float64), atol=0.02)
    target = (x0 - c_skip[:, None] * x) / c_out[:, None]
    assert torch.allclose(target.var(dim=1), torch.ones(4, dtype=torch.float64), atol=0.02)


def test_edm_sigma_data_comes_from_the_schedule_unless_given():
    assert EDMPrecond(Fixed(None), EDM()).sigma_data == 0.5
    assert EDMPrecond(Fixed(None), EDM(sigma_data=1.0)).sigma_data == 1.0
    assert EDMPrecond(Fixed(None), EDM(), sigma_data=0.3).options() == {"sigma_data": 0.3}
    rebuilt = make_precond("edm", Fixed(None), EDM(), **EDMPrecond(Fixed(None), EDM(sigma_data=2.0)).options())
    assert rebuilt.sigma_data == 2.0


def test_wrong_backbone_output_shape_is_named():
    x0, n, sigma, x = _data()
    with pytest.raises(ValueError, match="backbone returned shape"):
        EpsPrecond(Fixed(n[:, :2]), VPLinear())(x, sigma)
    with pytest.raises(ValueError, match="unknown prediction type 'score'"):
        make_precond("score", Fixed(n), VPLinear())


def test_simple_loss_is_the_eps_mse():
    x0, n, sigma, _ = _data()
    eps_hat = torch.randn_like(n)
    model = EpsPrecond(Fixed(eps_hat), VPLinear())
    loss = L.ddpm_simple_loss(model, x0, sigma, noise=n)
    assert loss.shape == (4,)
    assert torch.allclose(loss, ((eps_hat - n) ** 2).mean(dim=(1, 2)).float(), rtol=1e-5)
    assert torch.allclose(L.ddpm_simple_loss(EpsPrecond(Fixed(n), VPLinear()), x0, sigma, noise=n),
                          torch.zeros(4), atol=1e-10)


# categorical prediction trains by cross-entropy on its logits, not by a weighted MSE (tests/test_adapter_text.py)
@pytest.mark.parametrize("prediction", sorted(p for p in PRECONDITIONERS if p != "categorical"))
@pytest.mark.parametrize("weighting,lam", [
    ("uniform", lambda s: torch.ones_like(s)),
    ("snr", lambda s: s**-2),
    ("snr_plus_one", lambda s: 1 + s**-2),
    ("min_snr", lambda s: (s**-2).clamp(max=5.0)),
    ("edm", lambda s: (s**2 + 0.25) / (0.5 * s) ** 2),
])
def test_weighted_loss_is_lambda_times_x0_error(prediction, weighting, lam):
    """Whatever the parametrisation, loss = lambda(sigma) * mean |D(x) - x0|^2."""
    x0, n, sigma, x = _data()
    model = make_precond(prediction, Fixed(torch.randn_like(x0)), VPLinear())
    loss = L.denoising_loss(model, x0, sigma, noise=n, weighting=L.WEIGHTINGS[weighting])
    x0_err = ((model(x, sigma) - x0) ** 2).mean(dim=(1, 2))
    assert torch.allclose(loss.double(), lam(sigma) * x0_err, rtol=1e-5)


def test_categorical_prediction_refuses_the_mse_loss():
    from multidiff.backbones import Transformer1D, Transformer1DConfig

    backbone = Transformer1D(Transformer1DConfig.preset("tiny", in_channels=4, length=3, vocab_size=5, out_channels=5))
    model = make_precond("categorical", backbone, VPLinear())
    with pytest.raises(ValueError, match="cross-entropy"):
        L.denoising_loss(model, torch.zeros(2, 3, 4), torch.ones(2))


def test_loss_mask_ignores_padding():
    x0, n, sigma, x = _data()
    mask = torch.ones(4, 1, 5)
    mask[:, :, 3:] = 0
    out = torch.randn_like(x0)
    model = EpsPrecond(Fixed(out), VPLinear())
    masked = L.denoising_loss(model, x0, sigma, noise=n, mask=mask)
    garbage = out.clone()
    garbage[..., 3:] += 100.0  # changes only padded positions
    masked2 = L.denoising_loss(EpsPrecond(Fixed(garbage), VPLinear()), x0, sigma, noise=n, mask=mask)
    assert torch.allclose(masked, masked2)
    assert torch.allclose(masked, ((out - n)[..., :3] ** 2).mean(dim=(1, 2)).float(), rtol=1e-5)


def test_loss_rejects_bad_sigma_shape():
    x0, n, sigma, _ = _data()
    with pytest.raises(ValueError, match="sigma must have shape"):
        L.denoising_loss(EpsPrecond(Fixed(n), VPLinear()), x0, sigma[:2])


def test_self_conditioned_categorical_reads_the_previous_estimate_and_its_wrapper_feeds_it():
    from multidiff.backbones import Transformer1D, Transformer1DConfig
    from multidiff.core.guidance import SelfConditioning
    from multidiff.core.samplers import SAMPLERS, default_sigmas, sample

    config = Transformer1DConfig.preset("tiny", in_channels=4, length=3, vocab_size=5, out_channels=5,
                                        extra_channels=4)
    torch.manual_seed(0)
    backbone = Transformer1D(config)
    nn.init.normal_(backbone.final.weight)  # not the zero init: outputs depend on the input
    model = make_precond("categorical", backbone, EDM(sigma_data=0.5), sigma_data=0.5, self_condition=True)
    assert model.options() == {"sigma_data": 0.5, "self_condition": True}
    x, sigma = torch.randn(2, 3, 4), torch.tensor([0.3, 2.0])
    with torch.no_grad():
        plain, zeros = model(x, sigma), model(x, sigma, previous=torch.zeros_like(x))
        other = model(x, sigma, previous=torch.randn_like(x))
    assert torch.equal(plain, zeros) and not torch.allclose(plain, other)  # None reads as zeros
    with pytest.raises(ValueError, match="extra input channels"):
        make_precond("categorical", Transformer1D(Transformer1DConfig.preset(
            "tiny", in_channels=4, length=3, vocab_size=5, out_channels=5)), EDM(), self_condition=True)

    fed = []

    def spy(x, sigma, cond=None, previous=None):
        fed.append(None if previous is None else previous.clone())
        return model.forward(x, sigma, cond, previous)

    wrapped, returned = SelfConditioning(spy), []
    for method in ("euler", "heun", "unipc", "dpmpp_3m"):
        fed.clear(), returned.clear()
        sigmas = default_sigmas(model.schedule, 4, method)

        def watch(x, s, cond=None):
            returned.append(wrapped(x, s, cond))
            return returned[-1]

        with torch.no_grad():
            sample(watch, torch.randn(2, 3, 4) * sigmas[0], sigmas, method)
        assert fed[0] is None and len(fed) == SAMPLERS[method].nfe(4), method  # a new run starts afresh
        assert all(torch.equal(f, r) for f, r in zip(fed[1:], returned[:-1])), method
    wrapped(torch.randn(5, 3, 4), torch.tensor(0.1))
    assert fed[-1] is None  # another batch shape: afresh
