"""Exponential moving average of model weights (Polyak & Juditsky 1992), as used
for sampling by every modern diffusion model (e.g. Song & Ermon 2020, Sec. 3.5)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``theta_ema <- decay_t * theta_ema + (1 - decay_t) * theta`` after each step;
    buffers are copied. ``module`` is a frozen copy of the model in eval mode.

    Without warm-up ``decay_t = decay``. With ``warmup`` the average forgets
    the random initial weights early: ``decay_t = min(decay, (1 + t) / (10 + t))``
    at the ``t``-th update (t = 0, 1, ...), the warm-up of TensorFlow's
    ``ExponentialMovingAverage(num_updates=...)``."""

    def __init__(self, model: nn.Module, decay: float = 0.999, *, warmup: bool = False):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay, self.warmup = decay, warmup
        self.num_updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self._ema_tensors = (list(self.module.parameters()), list(self.module.buffers()))
        self._source, self._source_tensors = None, None

    def current_decay(self) -> float:
        """The decay the next :meth:`update` uses."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        if model is not self._source:  # walking the module tree costs more than the update for small models
            self._source, self._source_tensors = model, (list(model.parameters()), list(model.buffers()))
        (ema_params, ema_buffers), (params, buffers) = self._ema_tensors, self._source_tensors
        torch._foreach_lerp_(ema_params, params, 1.0 - self.current_decay())
        for ema_buffer, buffer in zip(ema_buffers, buffers):
            ema_buffer.copy_(buffer)
        self.num_updates += 1

    def state_dict(self) -> dict:
        return {"num_updates": self.num_updates, "decay": self.decay, "warmup": self.warmup,
                "weights": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["weights"])
        self.num_updates = int(state["num_updates"])
