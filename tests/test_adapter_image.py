"""The image adapter: normalisation round trips, the PNG grid, masks, super-resolution and inpainting."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from multidiff.adapters.image import (MASK_REGIONS, decode, downsample, encode, inpaint, inpaint_mask,
                                      low_res_condition, low_res_error, save_grid, super_resolution_data,
                                      super_resolve, to_uint8, training_data, upsample)
from multidiff.core.gmm import example_mixture
from multidiff.core.guidance import Inpaint
from multidiff.core.samplers import sample
from multidiff.core.schedules import karras_sigmas


def test_uint8_round_trip_is_exact():
    images = torch.arange(256, dtype=torch.uint8).reshape(4, 1, 8, 8)
    x = encode(images)
    assert x.dtype == torch.float32 and float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert torch.equal(to_uint8(x), images)


def test_float_round_trip_and_clamp():
    images = torch.rand(3, 3, 5, 5)
    assert torch.allclose(decode(encode(images)), images, atol=1e-6)
    assert decode(torch.tensor([-3.0, 0.0, 2.5])).tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match=r"\[0, 1\].*decode"):
        encode(torch.tensor([-0.5, 0.5]))
    with pytest.raises(TypeError, match="uint8"):
        encode(torch.tensor([1, 2]))


def test_training_data():
    split = {"x": torch.zeros(4, 1, 8, 8, dtype=torch.uint8), "label": torch.tensor([0, 1, 2, 3])}
    data = training_data(split)
    assert set(data) == {"x", "cond"} and torch.all(data["x"] == -1) and data["cond"].dtype == torch.int64
    assert set(training_data(split, conditional=False)) == {"x"}


# ---------------------------------------------------------------- the grid


def test_grid_png_size_and_pixels(tmp_path):
    from PIL import Image

    images = torch.rand(10, 1, 8, 8) * 2 - 1
    path = save_grid(images, tmp_path / "sub" / "grid.png", nrow=4, padding=2)
    with Image.open(path) as png:
        assert png.format == "PNG" and png.mode == "L"
        scale, cols, rows = 8, 4, 3  # 8 x 8 cells become 64 x 64 (min_cell); 10 images in rows of 4
        assert png.size == (cols * 8 * scale + (cols + 1) * 2, rows * 8 * scale + (rows + 1) * 2)
        grid = torch.from_numpy(np.asarray(png).copy())
    expected = to_uint8(images)
    # image 5 sits in row 1, column 1; every source pixel is a crisp 8 x 8 square
    top = left = 2 + 64 + 2
    cell = grid[top:top + 64, left:left + 64]
    assert torch.equal(cell, expected[5, 0].repeat_interleave(8, 0).repeat_interleave(8, 1))
    assert int(grid[0, 0]) == 128  # padding


def test_grid_rgb_uint8_and_large_images(tmp_path):
    from PIL import Image

    images = torch.randint(0, 256, (3, 3, 28, 28), dtype=torch.uint8)
    with Image.open(save_grid(images, tmp_path / "rgb.png", nrow=8, padding=0)) as png:
        assert png.mode == "RGB" and png.size == (3 * 28 * math.ceil(64 / 28), 28 * 3)  # x3 -> 84 px cells
    with pytest.raises(ValueError, match="C = 1 or 3"):
        save_grid(torch.zeros(2, 2, 8, 8), tmp_path / "bad.png")


# ---------------------------------------------------------------- masks


@pytest.mark.parametrize("region,hole_fraction", [("left", 0.5), ("right", 0.5), ("top", 0.5), ("bottom", 0.5),
                                                  ("center", 0.25)])
def test_fixed_masks(region, hole_fraction):
    mask = inpaint_mask(2, 8, 8, region)
    assert mask.shape == (2, 1, 8, 8) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert float(1 - mask.mean()) == hole_fraction
    side = {"left": mask[..., :4], "right": mask[..., 4:], "top": mask[..., :4, :], "bottom": mask[..., 4:, :],
            "center": mask[..., 2:6, 2:6]}[region]
    assert torch.all(side == 0)


def test_random_box_masks():
    mask = inpaint_mask(16, 16, 16, "random-box", generator=torch.Generator().manual_seed(0))
    holes = (1 - mask).sum(dim=(1, 2, 3))
    assert torch.all(holes >= 4 * 4) and torch.all(holes <= 8 * 8)  # sides in [1/4, 1/2] of 16
    assert len(set(holes.tolist())) > 1  # each example has its own box
    again = inpaint_mask(16, 16, 16, "random-box", generator=torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)
    with pytest.raises(ValueError, match="unknown mask region.*random-box"):
        inpaint_mask(1, 8, 8, "middle")
    assert "random-box" in MASK_REGIONS


# ---------------------------------------------------------------- super-resolution


def test_down_up_shapes_and_consistency():
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    low = downsample(x)
    assert low.shape == (2, 3, 4, 4) and torch.allclose(low[0, 0, 0, 0], x[0, 0, :2, :2].mean())
    assert upsample(low).shape == x.shape and upsample(low, mode="bilinear").shape == x.shape
    assert torch.equal(downsample(upsample(low)), low)  # nearest is an exact right inverse of average pooling
    assert low_res_condition(x).shape == x.shape
    data = super_resolution_data(x, torch.tensor([1, 2]))
    assert set(data["cond"]) == {"image", "label"} and torch.equal(data["cond"]["image"], upsample(low))
    with pytest.raises(ValueError, match="divisible by 2"):
        downsample(torch.zeros(1, 1, 7, 8))


def test_super_resolve_passes_the_condition():
    def denoiser(x, sigma, cond):  # an "oracle" that knows the answer is the conditioning image
        assert set(cond) == {"image", "label"}
        return cond["image"]

    low = torch.rand(2, 1, 4, 4) * 2 - 1
    out = super_resolve(denoiser, low, karras_sigmas(4, 0.01, 10.0), labels=torch.tensor([0, 1]), method="euler",
                        generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 8, 8)
    assert torch.equal(out, upsample(low)) and torch.all(low_res_error(out, low) == 0)


# ---------------------------------------------------------------- inpainting with an exact denoiser


def test_inpaint_keeps_known_pixels_with_exact_denoiser():
    mixture = example_mixture(dim=64, num_components=3, std_range=(0.1, 0.3), seed=2)  # 1 x 8 x 8 "images"
    known = mixture.sample(4, generator=torch.Generator().manual_seed(1)).float().reshape(4, 1, 8, 8)
    mask = inpaint_mask(4, 8, 8, "right")
    sigmas = karras_sigmas(24, 0.01, 20.0)
    out = inpaint(mixture, known, mask, sigmas, method="euler", generator=torch.Generator().manual_seed(0))
    assert out.shape == known.shape and torch.isfinite(out).all()
    assert torch.equal(out * mask, known * mask)
    again = inpaint(mixture, known, mask, sigmas, method="euler", generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert not torch.allclose(out * (1 - mask), known * (1 - mask))  # the hole is generated, not copied

    # the paste-back only fixes rounding: the sampler itself already ends on the known pixels
    x = torch.randn(known.shape, generator=torch.Generator().manual_seed(0)) * sigmas[0].float()
    raw = sample(Inpaint(mixture, mask, known), x, sigmas, method="euler")
    assert torch.allclose(raw * mask, known * mask, atol=1e-5)

    # the completed images lie on the data: each is more likely than 1 % of real draws
    real = mixture.log_prob(mixture.sample(2000, generator=torch.Generator().manual_seed(5)))
    assert torch.all(mixture.log_prob(out) > real.quantile(0.01))


# ---------------------------------------------------------------- the documented example


@pytest.mark.requires("sklearn")
def test_docs_example_runs(tmp_path, monkeypatch):
    docs = Path(__file__).resolve().parents[1] / "docs" / "images.md"
    blocks = re.findall(r"```python\n(.*?)```", docs.read_text(), re.S)
    assert blocks, "docs/images.md has no python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "docs/images.md:example", "exec"), {"__name__": "__docs__"})
    assert {"real.png", "gaussians.png", "inpainted.png"} <= {p.name for p in tmp_path.iterdir()}
