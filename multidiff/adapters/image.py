"""The image domain: ``x`` is ``(B, C, H, W)`` float in [-1, 1].

==================  ==========================================================
data space          ``uint8`` 0..255, or float in [0, 1] (what loaders give
                    and what people look at)
model space         float32 in [-1, 1]: :func:`encode` maps data -> model,
                    :func:`decode` maps back and clamps to [0, 1]
class-conditional   ``{"x": (B, C, H, W), "cond": (B,) int64 labels}``
super-resolution    ``{"x": ..., "cond": {"image": low_res_upsampled,
                    "label": labels (optional)}}``; the backbone must take
                    ``cond["image"]`` (e.g. concatenate it to its input)
inpainting masks    ``(B, 1, H, W)``, 1 where a pixel is known, 0 in the hole
                    (the convention of :class:`multidiff.core.guidance.Inpaint`)
==================  ==========================================================
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..atomic import atomic_write
from ..core.inpainting import sample_inpaint
from ..core.samplers import DEFAULT_METHOD, sample
from ..core.utils import randn_like

Tensor = torch.Tensor


# ---------------------------------------------------------------- shapes


@dataclass(frozen=True)
class ImageSpec:
    """What a model for an image dataset needs to know: ``shape = (C, H, W)`` and the class count
    (a registered dataset's: :func:`multidiff.data.images.default_spec`)."""

    shape: tuple[int, int, int]
    num_classes: int | None

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def resolution(self) -> tuple[int, int]:
        return self.shape[1], self.shape[2]


# ---------------------------------------------------------------- normalisation


def to_unit(images: Tensor) -> Tensor:
    """Data-space images (uint8, or float already in [0, 1]) as float32 in [0, 1]."""
    images = torch.as_tensor(images)
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    if not torch.is_floating_point(images):
        raise TypeError(f"images must be uint8 (0..255) or float in [0, 1], got {images.dtype}")
    if images.numel() and (images.min() < 0.0 or images.max() > 1.0):
        raise ValueError(f"float images must lie in [0, 1] (got min {float(images.min()):.3g}, max "
                         f"{float(images.max()):.3g}); for model outputs in [-1, 1] use decode()")
    return images.float()


def encode(images: Tensor) -> Tensor:
    """Data space (uint8 or float [0, 1]) -> model space, float32 in [-1, 1]."""
    return to_unit(images) * 2.0 - 1.0


def decode(x: Tensor) -> Tensor:
    """Model space -> float in [0, 1], clamped (samples overshoot a little)."""
    return ((x + 1.0) * 0.5).clamp(0.0, 1.0)


def to_uint8(x: Tensor) -> Tensor:
    """Model space -> uint8 0..255 (rounded)."""
    return (decode(x) * 255.0).round().to(torch.uint8)


def training_data(split: dict[str, Tensor], conditional: bool = True) -> dict[str, Tensor]:
    """A loader's split ``{"x", "label"}`` -> training data ``{"x": [-1, 1], "cond": labels}``
    (without ``cond`` when ``conditional`` is false), ready for ``random_batches``."""
    data = {"x": encode(split["x"])}
    if conditional:
        data["cond"] = split["label"].long()
    return data


# ---------------------------------------------------------------- looking at images


def _check_images(images: Tensor) -> Tensor:
    images = torch.as_tensor(images).detach().cpu()
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] < 1:
        raise ValueError(f"expected images of shape (B, C, H, W) with C = 1 or 3 and B >= 1, got "
                         f"{tuple(images.shape)}")
    return images


def save_grid(images: Tensor, path: str | os.PathLike, nrow: int = 8, *, value_range=(-1.0, 1.0),
              min_cell: int = 64, padding: int = 2, pad_value: int = 128) -> Path:
    """Write ``images (B, C, H, W)`` as one PNG, ``nrow`` images per row.

    Float images are mapped from ``value_range`` (model space by default;
    pass ``(0, 1)`` for data-space floats) and clamped; uint8 is used as is.
    Each image is enlarged by nearest neighbour by the smallest integer factor
    that makes its short side at least ``min_cell`` pixels (8 x 8 -> 64 x 64),
    so every source pixel stays one crisp square. Cells are separated by
    ``padding`` pixels of grey ``pad_value``."""
    images = _check_images(images)
    if nrow < 1 or min_cell < 1 or padding < 0:
        raise ValueError(f"need nrow >= 1, min_cell >= 1 and padding >= 0, got {nrow}, {min_cell}, {padding}")
    if images.dtype != torch.uint8:
        lo, hi = value_range
        images = ((images.double() - lo) / (hi - lo)).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    batch, channels, height, width = images.shape
    scale = math.ceil(min_cell / min(height, width))
    images = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)  # nearest neighbour
    cell_h, cell_w = height * scale, width * scale
    cols, rows = min(nrow, batch), math.ceil(batch / min(nrow, batch))
    grid = torch.full((channels, rows * cell_h + (rows + 1) * padding, cols * cell_w + (cols + 1) * padding),
                      pad_value, dtype=torch.uint8)
    for i in range(batch):
        top, left = padding + (i // cols) * (cell_h + padding), padding + (i % cols) * (cell_w + padding)
        grid[:, top:top + cell_h, left:left + cell_w] = images[i]

    from PIL import Image

    array = grid[0].numpy() if channels == 1 else grid.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array, mode="L" if channels == 1 else "RGB")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))  # a reader never sees half a PNG


# ---------------------------------------------------------------- inpainting

MASK_REGIONS = ("left", "right", "top", "bottom", "center", "random-box")


def inpaint_mask(batch: int, height: int, width: int, region: str, *,
                 generator: torch.Generator | None = None) -> Tensor:
    """Known-pixel mask ``(batch, 1, height, width)`` float32: 0 in the hole named
    by ``region``, 1 elsewhere. Halves for left/right/top/bottom; the centred
    square of half the side for center; for random-box, a box per example with
    sides uniform in [1/4, 1/2] of the image, placed uniformly (from ``generator``)."""
    if region not in MASK_REGIONS:
        raise ValueError(f"unknown mask region {region!r}; choose one of: {', '.join(MASK_REGIONS)}")
    if batch < 1 or height < 2 or width < 2:
        raise ValueError(f"need batch >= 1 and an image of at least 2 x 2, got {batch}, {height} x {width}")
    mask = torch.ones(batch, 1, height, width)
    if region == "left":
        mask[..., : width // 2] = 0
    elif region == "right":
        mask[..., width // 2:] = 0
    elif region == "top":
        mask[..., : height // 2, :] = 0
    elif region == "bottom":
        mask[..., height // 2:, :] = 0
    elif region == "center":
        h, w = max(1, height // 2), max(1, width // 2)
        top, left = (height - h) // 2, (width - w) // 2
        mask[..., top:top + h, left:left + w] = 0
    else:
        for i in range(batch):
            u = torch.rand(4, generator=generator).tolist()
            h = max(1, round(height * (0.25 + 0.25 * u[0])))
            w = max(1, round(width * (0.25 + 0.25 * u[1])))
            top, left = int(u[2] * (height - h + 1)), int(u[3] * (width - w + 1))
            mask[i, :, top:top + h, left:left + w] = 0
    return mask


def inpaint(denoiser, known: Tensor, mask: Tensor, sigmas: Tensor, *, method: str = DEFAULT_METHOD, cond=None,
            generator: torch.Generator | None = None, reconstruction_scale: float = 0.0, **options) -> Tensor:
    """Fill the holes (``mask == 0``) of model-space images ``known (B, C, H, W)``.

    Samples from ``sigmas[0]`` noise with ``denoiser`` wrapped in
    :class:`~multidiff.core.guidance.Inpaint` (the known pixels replace the
    x0 estimate), then pastes the known pixels back so they are bit-exact
    whatever the sampler's last step rounds to."""
    if known.ndim != 4 or not torch.is_floating_point(known):
        raise ValueError(f"known must be model-space floats of shape (B, C, H, W), got {known.dtype} "
                         f"{tuple(known.shape)}")
    return sample_inpaint(denoiser, known, mask, sigmas, method=method, cond=cond, generator=generator,
                          reconstruction_scale=reconstruction_scale, **options)


# ---------------------------------------------------------------- super-resolution


def downsample(x: Tensor, factor: int = 2) -> Tensor:
    """Average pooling by ``factor`` (the low-resolution observation): ``(B, C, H/f, W/f)``."""
    if x.ndim != 4 or x.shape[-1] % factor or x.shape[-2] % factor:
        raise ValueError(f"expected (B, C, H, W) with H and W divisible by {factor}, got {tuple(x.shape)}")
    return F.avg_pool2d(x, factor)


def upsample(x: Tensor, factor: int = 2, mode: str = "nearest") -> Tensor:
    """Enlarge by ``factor``: ``nearest`` (default; ``downsample(upsample(y)) == y``
    exactly, so the condition carries the low-resolution image unchanged) or ``bilinear``."""
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"mode must be 'nearest' or 'bilinear', got {mode!r}")
    if mode == "nearest":
        return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def low_res_condition(x: Tensor, factor: int = 2, mode: str = "nearest") -> Tensor:
    """The conditioning image for super-resolution: ``upsample(downsample(x))``, shaped like ``x``."""
    return upsample(downsample(x, factor), factor, mode)


def super_resolution_data(x: Tensor, labels: Tensor | None = None, factor: int = 2,
                          mode: str = "nearest") -> dict:
    """Training data for super-resolution from model-space ``x``:
    ``{"x": x, "cond": {"image": low_res_condition(x)[, "label": labels]}}``."""
    cond = {"image": low_res_condition(x, factor, mode)}
    if labels is not None:
        cond["label"] = labels.long()
    return {"x": x, "cond": cond}


def super_resolve(denoiser, low_res: Tensor, sigmas: Tensor, *, factor: int = 2, mode: str = "nearest",
                  labels: Tensor | None = None, method: str = DEFAULT_METHOD,
                  generator: torch.Generator | None = None, **options) -> Tensor:
    """Sample high-resolution images ``(B, C, f H, f W)`` for model-space ``low_res (B, C, H, W)``
    from a ``denoiser`` trained on :func:`super_resolution_data`."""
    cond = {"image": upsample(low_res, factor, mode)}
    if labels is not None:
        cond["label"] = labels.long()
    x = randn_like(cond["image"], generator) * torch.as_tensor(sigmas)[0].to(cond["image"])
    return sample(denoiser, x, sigmas, method=method, generator=generator, cond=cond, **options)


def low_res_error(x_hat: Tensor, low_res: Tensor, factor: int = 2) -> Tensor:
    """Per-example mean squared gap ``(B,)`` between ``downsample(x_hat)`` and ``low_res``:
    how far a super-resolved image is from agreeing with its input."""
    return (downsample(x_hat, factor) - low_res).pow(2).reshape(x_hat.shape[0], -1).mean(1)


__all__ = ["ImageSpec", "MASK_REGIONS", "decode", "downsample", "encode", "inpaint", "inpaint_mask",
           "low_res_condition", "low_res_error", "save_grid", "super_resolution_data", "super_resolve", "to_uint8",
           "to_unit", "training_data", "upsample"]
