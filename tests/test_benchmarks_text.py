"""The left-to-right baseline of benchmarks/text_baselines.py: what it predicts, and that it is causal."""

import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.requires("transformers")  # the benchmark loads text runs
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from text_baselines import CausalLM, lm_batches, mask_after_end  # noqa: E402


def test_targets_are_the_words_then_one_end():
    pad, bos = 0, 1
    ids = torch.tensor([[5, 6, 0, 0], [7, 8, 9, 10], [0, 0, 0, 0]])
    inputs, targets = lm_batches(ids, bos)
    targets = mask_after_end(targets, pad)
    assert inputs.tolist() == [[1, 5, 6, 0, 0], [1, 7, 8, 9, 10], [1, 0, 0, 0, 0]]
    assert targets.tolist() == [[5, 6, 0, -100, -100], [7, 8, 9, 10, 0], [0, -100, -100, -100, -100]]
    # every sentence is scored on its words plus one end, as the n-gram model and the run count tokens
    assert (targets != -100).sum(1).tolist() == [3, 5, 1]


def test_the_causal_model_never_sees_later_words():
    torch.manual_seed(0)
    model = CausalLM(vocab=20, length=6, width=16, depth=2, heads=2).eval()
    a = torch.randint(0, 20, (3, 6))
    b = a.clone()
    b[:, 4:] = (b[:, 4:] + 7) % 20  # change only the last two words
    with torch.no_grad():
        out_a, out_b = model(a), model(b)
    assert torch.allclose(out_a[:, :4], out_b[:, :4], atol=1e-5)
    assert not torch.allclose(out_a[:, 4:], out_b[:, 4:], atol=1e-5)


def test_warp_moments_of_a_logistic_cross_entropy():
    """The suggested training-noise distribution (benchmarks/text_recipes.py noise): for a
    cross-entropy that rises as a logistic in log sigma, the density dCE / dlog sigma is the logistic
    density, with mean at its centre and standard deviation s * pi / sqrt(3); a curve that falls
    somewhere adds no weight there."""
    from text_recipes import warp_moments

    log_sigma = torch.linspace(-6.0, 8.0, 2001, dtype=torch.float64)
    centre, s = 0.9, 0.35
    ce = 7.0 * torch.sigmoid((log_sigma - centre) / s)
    mean, std = warp_moments(log_sigma.exp(), ce)
    assert mean == pytest.approx(centre, abs=1e-3) and std == pytest.approx(s * torch.pi / 3**0.5, rel=1e-3)
    dipped = ce.clone()
    dipped[log_sigma > 5] -= 0.5 * torch.sigmoid((log_sigma[log_sigma > 5] - 6) / 0.2)  # a fall at the top
    assert warp_moments(log_sigma.exp(), dipped) == pytest.approx((mean, std), abs=1e-2)
