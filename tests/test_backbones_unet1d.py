"""The temporal 1-D U-Net: shapes (plain and folded), zero start, conditioning, examples kept
apart, JSON round trip, bad input."""

import pytest
import torch

from multidiff.backbones import UNet1D, UNet1DConfig, backbone_from_config, backbone_to_config


def small(**overrides):
    return UNet1D(UNet1DConfig(**{**dict(in_channels=6, length=16, base_channels=16, channel_mults=(1, 2),
                                         mid_attention=True, num_heads=2, num_classes=3), **overrides}))


def _randomise(model):
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model


def test_starts_at_zero_and_keeps_shapes():
    model = small()
    x = torch.randn(4, 6, 16)
    out = model(x, torch.randn(4), torch.tensor([0, 1, 2, 3]))
    assert out.shape == x.shape and not out.any()  # zero-initialised output conv
    folded = small(in_channels=8)
    assert folded(torch.randn(2, 1, 8, 16), torch.randn(2)).shape == (2, 1, 8, 16)


def test_conditioning_changes_the_output():
    model = _randomise(small())
    x, c = torch.randn(2, 6, 16), torch.randn(2)
    a = model(x, c, torch.tensor([0, 0]))
    b = model(x, c, torch.tensor([1, 1]))
    null = model(x, c)  # no label: the null class
    assert not torch.allclose(a, b) and torch.allclose(null, model(x, c, torch.tensor([3, 3])))


def test_examples_do_not_mix():
    """Each example's output depends on that example alone (GroupNorm, attention and FiLM are per example)."""
    model = _randomise(small())
    x, c, labels = torch.randn(3, 6, 16), torch.randn(3), torch.tensor([0, 1, 2])
    together = model(x, c, labels)
    alone = torch.cat([model(x[i:i + 1], c[i:i + 1], labels[i:i + 1]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_json_round_trip():
    model = small()
    again = backbone_from_config(backbone_to_config(model))
    assert again.config == model.config


def test_bad_inputs_and_configs():
    model = small()
    with pytest.raises(ValueError, match=r"\(B, 6, 16\)"):
        model(torch.randn(2, 6, 15), torch.randn(2))
    with pytest.raises(ValueError, match="divisible"):
        UNet1DConfig(length=10, channel_mults=(1, 2, 4))
    with pytest.raises(ValueError, match="odd"):
        UNet1DConfig(kernel_size=4)
    with pytest.raises(ValueError, match="class labels"):
        model(torch.randn(2, 6, 16), torch.randn(2), torch.tensor([0, 7]))


def test_a_conditioning_signal_is_read_beside_the_input():
    model = _randomise(small(in_channels=8, cond_channels=16, io_kernel_size=1))
    assert model.conv_in.in_channels == 24 and model.conv_in.kernel_size == (1,)
    assert model.conv_out.kernel_size == (1,)
    x, c = torch.randn(2, 1, 8, 16), torch.randn(2)
    signal = torch.randn(2, 2, 8, 16)
    out = model(x, c, {"label": torch.tensor([0, 1]), "image": signal})
    assert out.shape == x.shape
    assert not torch.allclose(out, model(x, c, {"label": torch.tensor([0, 1]), "image": signal + 1}))
    unlabelled = model(x, c, {"image": signal})  # the null class, as with no cond at all
    assert torch.allclose(unlabelled, model(x, c, {"label": torch.tensor([3, 3]), "image": signal}))
    apart = model(x[:1], c[:1], {"label": torch.tensor([0]), "image": signal[:1]})
    assert torch.allclose(apart, out[:1], atol=1e-5)  # the signal stays with its example
    with pytest.raises(ValueError, match="cond_channels=16"):
        model(x, c, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"cond\['image'\] must have shape \(2, 16, 16\)"):
        model(x, c, {"image": torch.randn(2, 3, 8, 16)})
    with pytest.raises(ValueError, match="takes no conditioning signal"):
        small()(torch.randn(2, 6, 16), c, {"image": torch.randn(2, 6, 16)})
    with pytest.raises(ValueError, match="io_kernel_size"):
        UNet1DConfig(io_kernel_size=2)


def test_top_channels_widen_the_first_level_only():
    """``top_channels`` sets the input conv's and the full-length level's width, which the output conv reads
    (so with as many channels as features the output can reach every feature); the deeper levels keep
    theirs, and the default width is the same network, weight for weight."""
    torch.manual_seed(0)
    plain = small(in_channels=24, io_kernel_size=1)
    torch.manual_seed(0)
    same = small(in_channels=24, io_kernel_size=1, top_channels=16)  # base_channels * channel_mults[0]
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), same.state_dict().values()))
    wide = _randomise(small(in_channels=24, io_kernel_size=1, top_channels=24, context_dim=5,
                            cross_attention="all"))
    assert wide.config.level_channels == (24, 32) and plain.config.level_channels == (16, 32)
    assert wide.conv_in.out_channels == 24 and wide.conv_out.in_channels == 24
    assert torch.linalg.matrix_rank(wide.conv_out.weight[:, :, 0]) == 24  # every output feature reachable
    assert torch.linalg.matrix_rank(_randomise(plain).conv_out.weight[:, :, 0]) == 16
    deeper = {k: v.shape for k, v in plain.state_dict().items()
              if k.startswith("mid") or (k.startswith(("down.1", "up.0")) and ".conv2." in k)}
    assert len(deeper) > 6 and deeper == {k: v.shape for k, v in wide.state_dict().items() if k in deeper}
    x = torch.randn(2, 24, 16)
    out = wide(x, torch.randn(2), {"context": torch.randn(2, 3, 5)})
    assert out.shape == x.shape and out.abs().sum() > 0
    with pytest.raises(ValueError, match="top_channels"):
        UNet1DConfig(top_channels=-1)
    with pytest.raises(ValueError, match="num_heads"):
        UNet1DConfig(channel_mults=(1,), top_channels=30, mid_attention=True, num_heads=4)


@pytest.mark.parametrize("where, blocks", [("mid", 0), ("up", 6), ("all", 10)])
def test_cross_attention_after_the_blocks_reads_the_context_there(where, blocks):
    """``cross_attention`` "up" / "all" adds one cross-attention after each residual block of the way up
    (/ of both ways); an untrained model still returns 0, and with the middle's cross-attention silenced the
    context still reaches the output through those blocks (and only through them)."""
    model = small(num_classes=0, context_dim=5, cross_attention=where, num_res_blocks=2)
    assert len(model.block_cross or []) == blocks
    x, c = torch.randn(2, 6, 16), torch.randn(2)
    context = {"context": torch.randn(2, 3, 5), "context_mask": torch.ones(2, 3, dtype=torch.bool)}
    assert not model(x, c, context).any()
    _randomise(model)
    with torch.no_grad():
        model.mid_cross.attn.proj.weight.zero_()
        model.mid_cross.attn.proj.bias.zero_()
    other = {"context": context["context"] + 1, "context_mask": context["context_mask"]}
    assert torch.allclose(model(x, c, context), model(x, c, other)) == (where == "mid")
    if where == "mid":  # the default: the same modules (and state-dict keys) as before the option existed
        assert not any(key.startswith("block_cross") for key in model.state_dict())
    with pytest.raises(ValueError, match="cross_attention"):
        UNet1DConfig(context_dim=5, cross_attention="everywhere")
