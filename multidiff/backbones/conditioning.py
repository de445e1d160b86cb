"""What a backbone is fed besides ``(x_in, c_noise)``: the ``cond`` argument, checked once.

``cond`` is ``None``, a LongTensor of class labels ``(B,)``, or a dict with
any of

================  =================  ============================================
key               shape              meaning
================  =================  ============================================
``label``         ``(B,)`` int       class in ``[0, num_classes]``; ``num_classes``
                                     is the null class (classifier-free guidance)
``context``       ``(B, L, Dc)``     a sequence to cross-attend to (text tokens ...)
``context_mask``  ``(B, L)`` bool    ``True`` = a real token, ``False`` = padding
``image``         ``(B, C', h, w)``  an image concatenated to the input as extra
                                     channels (super-resolution's low-res image);
                                     resized to the input's ``(H, W)`` if needed
================  =================  ============================================

A missing label means the null class; a missing context means an empty one
(the backbones attend to a learned null token, so "no context" and "all
tokens masked" are the same input). Keys the backbone was not built for are
errors, not silently ignored.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

COND_KEYS = ("label", "context", "context_mask", "image")


class Conditioning(NamedTuple):
    labels: torch.Tensor | None  # (B,) long, or None when the backbone has no classes
    context: torch.Tensor | None  # (B, L, Dc)
    context_mask: torch.Tensor | None  # (B, L) bool, True = attend
    image: torch.Tensor | None  # (B, C', h, w)


def class_labels(labels: torch.Tensor | None, batch: int, num_classes: int, device, owner: str) -> torch.Tensor | None:
    """Checked labels ``(B,)`` (the null class ``num_classes`` where ``labels`` is None), or None
    for an unconditional backbone (``num_classes == 0``, which must get no labels)."""
    if not num_classes:
        if labels is not None:
            raise ValueError(f"this {owner} is unconditional (num_classes=0) but got class labels; build it with "
                             f"num_classes > 0")
        return None
    if labels is None:
        return torch.full((batch,), num_classes, dtype=torch.long, device=device)
    if not isinstance(labels, torch.Tensor) or labels.shape != (batch,) or labels.dtype not in (torch.int32,
                                                                                                torch.int64):
        description = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, torch.Tensor) else type(labels)
        raise ValueError(f"cond must be integer class labels of shape ({batch},), got {description}")
    if labels.numel() and (labels.min() < 0 or labels.max() > num_classes):
        raise ValueError(f"class labels must lie in [0, {num_classes}] ({num_classes} = null class)")
    return labels


def split_cond(cond, x: torch.Tensor, *, num_classes: int, context_dim: int, cond_channels: int,
               owner: str) -> Conditioning:
    """Check ``cond`` (None, labels, or a dict with :data:`COND_KEYS`) against what the backbone
    was built for (``num_classes``, ``context_dim``, ``cond_channels``) and the batch of ``x``."""
    if cond is None or isinstance(cond, torch.Tensor):
        cond = {"label": cond}
    if not isinstance(cond, dict):
        raise ValueError(f"cond must be None, a tensor of class labels or a dict with keys {COND_KEYS}, got "
                         f"{type(cond).__name__}")
    if unknown := sorted(set(cond) - set(COND_KEYS)):
        raise ValueError(f"unknown cond key(s) {unknown}; a {owner} understands {COND_KEYS}")
    batch = x.shape[0]
    labels = class_labels(cond.get("label"), batch, num_classes, x.device, owner)

    context, mask = cond.get("context"), cond.get("context_mask")
    if context is not None or mask is not None:
        if not context_dim:
            raise ValueError(f"this {owner} has no cross-attention (context_dim=0) but got a context; build it "
                             f"with context_dim > 0")
        if context is None:
            raise ValueError("cond has a context_mask but no context")
        if context.ndim != 3 or context.shape[0] != batch or context.shape[2] != context_dim:
            raise ValueError(f"cond['context'] must have shape ({batch}, L, {context_dim}), got "
                             f"{tuple(context.shape)}")
        if mask is not None and (mask.dtype != torch.bool or mask.shape != context.shape[:2]):
            raise ValueError(f"cond['context_mask'] must be a bool tensor of shape {tuple(context.shape[:2])} "
                             f"(True = real token), got {mask.dtype} {tuple(mask.shape)}")

    image = cond.get("image")
    if cond_channels:
        if image is None:
            raise ValueError(f"this {owner} is conditioned on an image (cond_channels={cond_channels}); pass "
                             f"cond={{'image': (B, {cond_channels}, h, w), ...}}")
        if image.ndim != 4 or image.shape[0] != batch or image.shape[1] != cond_channels:
            raise ValueError(f"cond['image'] must have shape ({batch}, {cond_channels}, h, w), got "
                             f"{tuple(image.shape)}")
    elif image is not None:
        raise ValueError(f"this {owner} takes no conditioning image (cond_channels=0) but got one; build it with "
                         f"cond_channels > 0")
    return Conditioning(labels, context, mask, image)


def pooled_context(context: torch.Tensor | None, mask: torch.Tensor | None, batch: int, dim: int,
                   like: torch.Tensor) -> torch.Tensor:
    """The mean of the context's real tokens, ``(B, Dc)`` (zeros without a context): the pooled text
    vector that Imagen (Saharia et al. 2022, Sec. 2.2) adds to the timestep embedding beside
    cross-attention, so a global attribute of the prompt reaches every block through FiLM."""
    if context is None:
        return like.new_zeros(batch, dim)
    weights = (torch.ones(context.shape[:2], device=context.device) if mask is None
               else mask.to(context.device, torch.float32))  # (B, L)
    total = (context.float() * weights[..., None]).sum(1)  # (B, Dc)
    return (total / weights.sum(1, keepdim=True).clamp_min(1.0)).to(like.dtype)


def check_image_input(x: torch.Tensor, channels: int, hw: tuple[int, int], owner: str) -> None:
    """Refuse an input that is not ``(B, channels, H, W)`` with the configured ``(H, W)``."""
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{owner} expects x of shape (B, {channels}, {hw[0]}, {hw[1]}) (in_channels={channels}), "
                         f"got {tuple(x.shape)}")
    if tuple(x.shape[2:]) != hw:
        raise ValueError(f"{owner} was built for image_size {hw[0]}x{hw[1]} but got {x.shape[2]}x{x.shape[3]}; "
                         f"build it with image_size=({x.shape[2]}, {x.shape[3]}) or resize the input")


def noise_input(c_noise: torch.Tensor, batch: int) -> torch.Tensor:
    """``c_noise`` as ``(B,)``: one value per example, or one value for the whole batch."""
    c_noise = torch.as_tensor(c_noise).reshape(-1)
    if c_noise.numel() == 1:
        return c_noise.expand(batch)
    if c_noise.numel() != batch:
        raise ValueError(f"c_noise must have one value per example ({batch}) or one in all, got {c_noise.numel()}")
    return c_noise


def concat_image(x: torch.Tensor, image: torch.Tensor | None) -> torch.Tensor:
    """``[x, image]`` along channels; an image of another size is first resized to x's ``(H, W)``
    bicubically, as SR3 (Saharia et al. 2021) upsamples its low-resolution input."""
    if image is None:
        return x
    if image.shape[2:] != x.shape[2:]:
        image = torch.nn.functional.interpolate(image, size=tuple(x.shape[2:]), mode="bicubic", align_corners=False)
    return torch.cat([x, image.to(x.dtype)], dim=1)  # (B, C + C', H, W)
