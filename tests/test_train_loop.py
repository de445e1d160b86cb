"""The training loop, EMA and minibatches."""

import json

import pytest
import torch

from multidiff.backbones import MLP, MLPConfig
from multidiff.core.losses import edm
from multidiff.core.precond import make_precond
from multidiff.core.schedules import EDM
from multidiff.data import random_batches
from multidiff.train import EMA, TrainConfig, train


def test_ema_update_is_the_convex_combination():
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    old = [p.clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    for averaged, before, now in zip(ema.module.parameters(), old, model.parameters()):
        assert torch.allclose(averaged, 0.9 * before + 0.1 * now)
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_random_batches_cover_each_epoch_once():
    data = {"x": torch.arange(10.0)[:, None], "i": torch.arange(10)}
    batches = random_batches(data, 5, torch.Generator().manual_seed(0))
    epoch = torch.cat([next(batches)["i"] for _ in range(2)])
    assert sorted(epoch.tolist()) == list(range(10))
    batch = next(batches)
    assert torch.equal(batch["x"][:, 0].long(), batch["i"])  # rows stay together
    with pytest.raises(ValueError, match="batch_size"):
        next(random_batches(data, 11))
    with pytest.raises(ValueError, match="one length"):
        next(random_batches({"x": torch.zeros(3), "y": torch.zeros(4)}, 2))


@pytest.fixture
def one_thread():
    """A 32-wide MLP trains fastest on one thread; on a busy 2-core machine two were 6x slower (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_learns_the_gaussian_denoiser(tmp_path, one_thread):
    """Data N(0, s^2 I) has the ideal denoiser D(x, sigma) = s^2 / (s^2 + sigma^2) x.
    With sigma_data = 1 != s the untrained EDM model is sigma_data^2 / (sigma_data^2 +
    sigma^2) x, so its error is known and training must cut it by at least 4x."""
    s, sigma_data = 0.3, 1.0
    torch.manual_seed(0)
    model = make_precond("edm", MLP(MLPConfig(width=32, depth=2)), EDM(sigma_data=sigma_data), sigma_data=sigma_data)
    x = torch.randn(4096, 2, generator=torch.Generator().manual_seed(1)) * s
    sigma = torch.tensor([0.1, 0.3, 1.0]).repeat_interleave(200)
    probe = torch.randn(600, 2, generator=torch.Generator().manual_seed(2)) * (s**2 + sigma[:, None] ** 2).sqrt()
    ideal = s**2 / (s**2 + sigma[:, None] ** 2) * probe

    def error():
        with torch.no_grad():
            return (model(probe, sigma) - ideal).pow(2).mean().item()

    before = error()
    result = train(model, random_batches({"x": x}, 256, torch.Generator().manual_seed(3)),
                   TrainConfig(steps=300, lr=3e-3, log_every=100), weighting=edm(sigma_data),
                   log_path=tmp_path / "log.jsonl")
    assert error() < before / 4
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [100, 200, 300] and log == result.history


def test_diverging_loss_is_reported():
    model = make_precond("edm", MLP(MLPConfig(width=8, depth=1)), EDM(sigma_data=1.0), sigma_data=1.0)
    data = {"x": torch.full((16, 2), float("nan"))}
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train(model, random_batches(data, 8), TrainConfig(steps=4, log_every=2))
