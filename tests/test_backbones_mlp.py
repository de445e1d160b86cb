"""The residual MLP backbone, its noise embeddings and the backbone registry."""

import pytest
import torch

from multidiff.backbones import MLP, MLPConfig, backbone_from_config, backbone_to_config
from multidiff.backbones.embeddings import FourierEmbedding, make_noise_embedding, sinusoidal_embedding


def _perturbed(config: MLPConfig) -> MLP:
    model = MLP(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def test_shapes_and_zero_output_at_init():
    model = MLP(MLPConfig(dim=3, width=32, depth=2))
    out = model(torch.randn(5, 3), torch.randn(5))
    assert out.shape == (5, 3) and torch.equal(out, torch.zeros(5, 3))


def test_noise_level_changes_the_output():
    model = _perturbed(MLPConfig(width=32))
    x = torch.randn(4, 2)
    assert not torch.allclose(model(x, torch.full((4,), -1.0)), model(x, torch.full((4,), 1.0)))


def test_class_conditioning_and_the_null_class():
    model = _perturbed(MLPConfig(width=32, num_classes=3))
    x, c_noise = torch.randn(4, 2), torch.zeros(4)
    a, b = model(x, c_noise, torch.zeros(4, dtype=torch.long)), model(x, c_noise, torch.ones(4, dtype=torch.long))
    assert not torch.allclose(a, b)
    null = torch.full((4,), model.null_class, dtype=torch.long)
    assert torch.equal(model(x, c_noise), model(x, c_noise, null))


@pytest.mark.parametrize("config, args, match", [
    (MLPConfig(), (torch.randn(4, 3), torch.zeros(4)), r"shape \(B, 2\)"),
    (MLPConfig(), (torch.randn(4, 2), torch.zeros(4), torch.zeros(4, dtype=torch.long)), "unconditional"),
    (MLPConfig(num_classes=2), (torch.randn(4, 2), torch.zeros(4), torch.full((4,), 3)), r"\[0, 2\]"),
    (MLPConfig(num_classes=2), (torch.randn(4, 2), torch.zeros(4), torch.zeros(4)), "integer class labels"),
])
def test_bad_inputs_are_named(config, args, match):
    with pytest.raises(ValueError, match=match):
        MLP(config)(*args)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="depth"):
        MLPConfig(depth=0)
    with pytest.raises(ValueError, match="unknown noise embedding"):
        MLP(MLPConfig(embedding="wavelet"))


def test_sinusoidal_embedding_values():
    emb = sinusoidal_embedding(torch.tensor([0.0, 2.0]), 8)
    assert emb.shape == (2, 8)
    assert torch.equal(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))  # cos 0, sin 0
    assert emb[1, 0].item() == pytest.approx(torch.cos(torch.tensor(2.0)).item())  # the first frequency is 1
    with pytest.raises(ValueError, match="even"):
        sinusoidal_embedding(torch.zeros(2), 7)


def test_fourier_frequencies_are_saved_with_the_weights():
    assert "freqs" in FourierEmbedding(16).state_dict()
    assert make_noise_embedding("positional", 16).state_dict() == {}


def test_registry_round_trip():
    model = MLP(MLPConfig(width=24, num_classes=4, embedding="positional"))
    config = backbone_to_config(model)
    assert config["name"] == "mlp" and config["width"] == 24
    assert backbone_from_config(config).config == model.config
    with pytest.raises(ValueError, match="unknown backbone"):
        backbone_from_config({"name": "nope"})
    with pytest.raises(ValueError, match="bad mlp backbone config"):
        backbone_from_config({"name": "mlp", "height": 3})
