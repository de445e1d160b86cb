"""The image backbones (UNet2D, DiT): shapes, zero init, conditioning, config round trip, errors."""

import json
import re
from pathlib import Path

import pytest
import torch

from multidiff.backbones import (DiT, DiTConfig, UNet2D, UNet2DConfig, backbone_from_config,
                                 backbone_to_config)
from multidiff.backbones.embeddings import sincos_2d_embedding
from multidiff.core.guidance import ClassifierFreeGuidance
from multidiff.core.precond import make_precond
from multidiff.core.schedules import EDM

BACKBONES = [(UNet2D, UNet2DConfig), (DiT, DiTConfig)]
IDS = ["unet2d", "dit"]
DOCS = Path(__file__).resolve().parents[1] / "docs" / "backbones.md"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny, so intra-op threads cost more than they save, and on a shared
    machine their spin-waiting makes a forward pass ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(config_cls, **overrides):
    return config_cls.preset("tiny", **{"image_size": 8, **overrides})


def perturbed(model):
    """The model with its zero-initialised layers moved off zero, so every path carries signal."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def inputs(config, batch=3):
    height, width = (config.image_size,) * 2 if isinstance(config.image_size, int) else config.image_size
    return torch.randn(batch, config.in_channels, height, width), torch.randn(batch)


@pytest.mark.parametrize("cls, config_cls", BACKBONES, ids=IDS)
@pytest.mark.parametrize("size, in_channels, out_channels", [(8, 3, None), (16, 1, None), (28, 1, 2),
                                                             (32, 3, 6), ((16, 24), 2, None)])
def test_shapes_and_zero_output_at_init(cls, config_cls, size, in_channels, out_channels):
    model = cls(tiny(config_cls, image_size=size, in_channels=in_channels, out_channels=out_channels))
    x, c_noise = inputs(model.config, batch=2)
    out = model(x, c_noise)
    assert out.shape == (2, out_channels or in_channels, *x.shape[2:])
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("cls, config_cls", BACKBONES, ids=IDS)
def test_one_optimiser_step_leaves_zero(cls, config_cls):
    model = cls(tiny(config_cls))
    x, c_noise = inputs(model.config)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    (model(x, c_noise) - x).square().mean().backward()
    optimiser.step()
    assert model(x, c_noise).abs().max() > 0


@pytest.mark.parametrize("cls, config_cls", BACKBONES, ids=IDS)
def test_noise_level_and_class_change_the_output(cls, config_cls):
    model = perturbed(cls(tiny(config_cls, num_classes=3)))
    x, c_noise = inputs(model.config)
    labels = torch.tensor([0, 1, 2])
    out = model(x, c_noise, labels)
    assert not torch.allclose(out, model(x, c_noise + 1.0, labels))
    assert not torch.allclose(out, model(x, c_noise, (labels + 1) % 3))
    null = torch.full((3,), model.null_class)
    assert torch.equal(model(x, c_noise), model(x, c_noise, null))
    assert torch.equal(model(x, c_noise, {"label": labels}), out)


def _masked_context(batch=2, length=5, dim=8):
    context = torch.randn(batch, length, dim)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[:, 3:] = False  # the last two tokens are padding
    return context, mask


@pytest.mark.parametrize("cls, config_cls", BACKBONES, ids=IDS)
def test_cross_attention_respects_the_padding_mask(cls, config_cls):
    model = perturbed(cls(tiny(config_cls, context_dim=8)))
    x, c_noise = inputs(model.config, batch=2)
    context, mask = _masked_context()
    out = model(x, c_noise, {"context": context, "context_mask": mask})
    padded = context.clone()
    padded[:, 4] += 5.0
    assert torch.equal(model(x, c_noise, {"context": padded, "context_mask": mask}), out)
    real = context.clone()
    real[:, 0] += 5.0
    assert not torch.allclose(model(x, c_noise, {"context": real, "context_mask": mask}), out)
    # no context at all is the same input as a context whose tokens are all padding (the null token remains)
    nothing = {"context": context, "context_mask": torch.zeros_like(mask)}
    assert torch.allclose(model(x, c_noise), model(x, c_noise, nothing), atol=1e-6)


@pytest.mark.parametrize("cls, config_cls", BACKBONES, ids=IDS)
def test_conditioning_image_is_resized_and_used(cls, config_cls):
    model = perturbed(cls(tiny(config_cls, image_size=16, cond_channels=3)))
    x, c_noise = inputs(model.config, batch=2)
    low_res = torch.randn(2, 3, 8, 8)
    out = model(x, c_noise, {"image": low_res})
    assert out.shape == x.shape
    assert not torch.allclose(out, model(x, c_noise, {"image": low_res.flip(-1)}))
    upsampled = torch.nn.functional.interpolate(low_res, size=(16, 16), mode="bicubic", align_corners=False)
    assert torch.allclose(model(x, c_noise, {"image": upsampled}), out)
    with pytest.raises(ValueError, match="conditioned on an image"):
        model(x, c_noise)


@pytest.mark.parametrize("cls, config_cls", BACKBONES, ids=IDS)
def test_eval_mode_is_deterministic(cls, config_cls):
    model = perturbed(cls(tiny(config_cls, dropout=0.5)))
    x, c_noise = inputs(model.config)
    assert not torch.equal(model(x, c_noise), model(x, c_noise))  # dropout is active in training
    model.eval()
    assert torch.equal(model(x, c_noise), model(x, c_noise))


@pytest.mark.parametrize("cls, config_cls", BACKBONES, ids=IDS)
def test_registry_json_round_trip_reproduces_outputs(cls, config_cls):
    model = perturbed(cls(tiny(config_cls, image_size=(8, 12), num_classes=4, context_dim=6,
                               embedding="positional"))).eval()
    saved = json.loads(json.dumps(backbone_to_config(model)))
    rebuilt = backbone_from_config(saved)
    assert type(rebuilt) is cls and rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    x, c_noise = inputs(model.config)
    cond = {"label": torch.tensor([0, 3, 4]), "context": torch.randn(3, 2, 6)}
    assert torch.equal(rebuilt(x, c_noise, cond), model(x, c_noise, cond))


@pytest.mark.parametrize("cls, config_cls", BACKBONES, ids=IDS)
def test_gradient_reaches_every_parameter(cls, config_cls):
    """No parameter is left out of the graph (DDP's find_unused_parameters=False needs that),
    with every conditioning input given, and with none (null class, empty context)."""
    model = perturbed(cls(tiny(config_cls, num_classes=3, context_dim=8, cond_channels=1)))
    x, c_noise = inputs(model.config, batch=2)
    context, mask = _masked_context()
    cond = {"label": torch.tensor([0, 3]), "context": context, "context_mask": mask, "image": torch.randn(2, 1, 4, 4)}
    model(x, c_noise, cond).square().mean().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []

    model = perturbed(cls(tiny(config_cls, num_classes=3, context_dim=8)))
    model(x, c_noise).square().mean().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("cls, config_cls", BACKBONES, ids=IDS)
def test_classifier_free_guidance_through_a_denoiser(cls, config_cls):
    model = perturbed(cls(tiny(config_cls, num_classes=2, context_dim=8)))
    denoiser = make_precond("edm", model, EDM())
    x, sigma = torch.randn(2, 3, 8, 8), torch.tensor([0.5, 2.0])
    context, mask = _masked_context()
    cond = {"label": torch.tensor([0, 1]), "context": context, "context_mask": mask}
    uncond = {"label": torch.tensor([model.null_class]), "context": torch.zeros(1, 5, 8),
              "context_mask": torch.zeros(1, 5, dtype=torch.bool)}
    guided = ClassifierFreeGuidance(denoiser, 3.0, uncond)(x, sigma, cond)
    assert guided.shape == x.shape and torch.isfinite(guided).all()


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("cls, config_cls", BACKBONES, ids=IDS)
def test_bad_inputs_are_named(cls, config_cls):
    model = cls(tiny(config_cls, num_classes=2))
    c_noise = torch.zeros(2)
    with pytest.raises(ValueError, match=r"in_channels=3"):
        model(torch.randn(2, 1, 8, 8), c_noise)
    with pytest.raises(ValueError, match=r"image_size 8x8 but got 16x16"):
        model(torch.randn(2, 3, 16, 16), c_noise)
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        model(x, c_noise, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="unknown cond key"):
        model(x, c_noise, {"text": torch.zeros(2)})
    with pytest.raises(ValueError, match="context_dim=0"):
        model(x, c_noise, {"context": torch.zeros(2, 3, 4)})
    with pytest.raises(ValueError, match="one value per example"):
        model(x, torch.zeros(3))
    with pytest.raises(ValueError, match="unconditional"):
        cls(tiny(config_cls))(x, c_noise, torch.tensor([0, 1]))
    with_context = cls(tiny(config_cls, context_dim=8))
    with pytest.raises(ValueError, match=r"\(2, L, 8\)"):
        with_context(x, c_noise, {"context": torch.zeros(2, 3, 4)})
    with pytest.raises(ValueError, match="bool tensor"):
        with_context(x, c_noise, {"context": torch.zeros(2, 3, 8), "context_mask": torch.ones(2, 3)})


@pytest.mark.parametrize("make, match", [
    (lambda: UNet2DConfig(channel_mults=()), "non-empty"),
    (lambda: UNet2DConfig(image_size=32, channel_mults=(1, 2, 2), attention_resolutions=(4,)),
     r"\[4\] are not reached.*\(32, 16, 8\)"),
    (lambda: UNet2DConfig(image_size=28, channel_mults=(1, 2, 2, 2), attention_resolutions=()), "not divisible"),
    (lambda: UNet2DConfig(base_channels=24, num_heads=5), "num_heads=5"),
    (lambda: UNet2DConfig(num_res_blocks=0), "num_res_blocks"),
    (lambda: UNet2DConfig(embedding="wavelet"), "unknown noise embedding"),
    (lambda: UNet2DConfig(image_size=(8, 8, 8)), "pair"),
    (lambda: DiTConfig(image_size=28, patch_size=8), r"patch_size=8; use one of \[1, 2, 4, 7, 14, 28\]"),
    (lambda: DiTConfig(hidden_size=96, num_heads=5), "num_heads=5"),
    (lambda: DiTConfig(dropout=1.0), "dropout"),
    (lambda: UNet2DConfig.preset("huge"), "unknown UNet2DConfig preset 'huge'"),
    (lambda: DiTConfig.preset("tiny", width=3), r"no field\(s\) \['width'\]"),
    (lambda: backbone_from_config({"name": "dit", "height": 3}), "bad dit backbone config"),
])
def test_bad_configs_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ---------------------------------------------------------------- presets and pieces


# the ranges documented in docs/backbones.md (3-channel, unconditional)
PRESET_RANGES = {"tiny": (50_000, 200_000), "small": (1_000_000, 3_000_000), "base": (25_000_000, 45_000_000)}


@pytest.mark.parametrize("cls, config_cls", BACKBONES, ids=IDS)
@pytest.mark.parametrize("name", PRESET_RANGES)
def test_preset_sizes_are_in_the_documented_range(cls, config_cls, name):
    low, high = PRESET_RANGES[name]
    for size in (28, 32):
        count = sum(p.numel() for p in cls(config_cls.preset(name, image_size=size)).parameters())
        assert low <= count <= high, (name, size, count)


def test_unet_presets_follow_the_image_size():
    for size in (8, 16, 28, 32):
        assert UNet2DConfig.preset("small", image_size=size).attention_resolutions == (size // 2,)


def test_sincos_2d_embedding_separates_rows_and_columns():
    emb = sincos_2d_embedding(3, 4, 16)  # raster order: token i is row i // 4, column i % 4
    assert emb.shape == (12, 16)
    assert torch.equal(emb[0, :8], emb[3, :8]) and not torch.equal(emb[0, 8:], emb[3, 8:])  # same row
    assert torch.equal(emb[1, 8:], emb[5, 8:]) and not torch.equal(emb[1, :8], emb[5, :8])  # same column
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_2d_embedding(2, 2, 6)


def test_docs_example_runs(tmp_path, monkeypatch):
    blocks = [b for b in re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S) if "import" in b]
    assert blocks, "docs/backbones.md has no runnable example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        if "# not run by the tests" not in block:
            exec(compile(block, "backbones.md:example", "exec"), {"__name__": "__docs__"})
