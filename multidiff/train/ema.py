"""Exponential moving average of model weights (Polyak & Juditsky 1992), as used
for sampling by every modern diffusion model (e.g. Song & Ermon 2020, Sec. 3.5)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``theta_ema <- decay * theta_ema + (1 - decay) * theta`` after each step;
    buffers are copied. ``module`` is a frozen copy of the model in eval mode."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        for ema_buffer, buffer in zip(self.module.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)
