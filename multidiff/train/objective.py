"""What the engine minimises: a loss function ``loss_fn(model, batch, generator) -> (B,)``.

The default, :func:`denoising_objective`, draws one sigma per example from the
model's schedule and returns the weighted denoising loss of
:mod:`multidiff.core.losses` for a batch ``{"x": x0, "cond": ..., "mask": ...}``
(``cond`` and ``mask`` optional). An adapter with another objective passes its
own function of the same shape; the engine averages the values.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..core.losses import denoising_loss, snr

LossFn = Callable[[nn.Module, dict, torch.Generator], torch.Tensor]


def denoising_objective(weighting: Callable[[torch.Tensor], torch.Tensor] = snr) -> LossFn:
    """The weighted denoising loss per example at sigmas drawn from ``model.schedule``."""

    def loss_fn(model: nn.Module, batch: dict, generator: torch.Generator) -> torch.Tensor:
        x0 = batch["x"]
        sigma = model.schedule.sample_sigmas(x0.shape[0], generator=generator, device=x0.device)  # (B,)
        return denoising_loss(model, x0, sigma, weighting=weighting, cond=batch.get("cond"), mask=batch.get("mask"),
                              generator=generator)

    return loss_fn


class Objective(nn.Module):
    """``model`` and its loss as one module, so that DistributedDataParallel sees the
    forward pass (it syncs gradients of what runs inside ``forward``)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        losses = self.loss_fn(self.model, batch, generator)
        if losses.ndim != 1:
            raise ValueError(f"the loss function must return one value per example, shape (B,), got "
                             f"{tuple(losses.shape)}")
        return losses


def to_device(batch, device: torch.device):
    """``batch`` (tensors in dicts / lists, any depth) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch


def batch_size_of(batch) -> int:
    """Rows in ``batch``: the length of ``batch["x"]``, else of its first tensor."""
    if isinstance(batch, dict) and isinstance(batch.get("x"), torch.Tensor):
        return len(batch["x"])
    for value in batch.values():
        if isinstance(value, torch.Tensor):
            return len(value)
    raise ValueError("a batch must be a dict holding at least one tensor (normally 'x')")
