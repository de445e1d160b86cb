"""The losses and gradient norms since the last metrics record, kept on the device.

Each micro-batch's mean loss is copied into a preallocated slot (one small
device op, no host sync); the engine reads the slots only at its sync points
(logging, sampling, checkpoints), to average them and to find the first step
whose loss was NaN or infinite."""

from __future__ import annotations

import math
import time

import torch


class Interval:
    def __init__(self, log_every: int, grad_accum: int, device: torch.device):
        self.grad_accum = grad_accum
        self.losses = torch.zeros(log_every * grad_accum, device=device)  # one per micro-batch
        self.grad_norms = torch.zeros(log_every, device=device)  # one per step (when clipping)
        self._loss_slots, self._norm_slots = self.losses.unbind(), self.grad_norms.unbind()
        self.reset(first_step=0)

    def _reserve(self, losses: int, steps: int) -> None:
        """Room for more values: only when a resumed run logs less often than the one it resumes."""
        if losses > len(self.losses):
            self.losses = torch.cat([self.losses, torch.zeros(losses, device=self.losses.device)])
            self._loss_slots = self.losses.unbind()
        if steps > len(self.grad_norms):
            self.grad_norms = torch.cat([self.grad_norms, torch.zeros(steps, device=self.grad_norms.device)])
            self._norm_slots = self.grad_norms.unbind()

    def reset(self, first_step: int) -> None:
        """Start an interval whose first optimizer step has index ``first_step``."""
        self.first_step = first_step
        self.num_losses = self.num_steps = self.examples = 0
        self.started = time.perf_counter()

    def add_loss(self, loss: torch.Tensor, examples: int) -> None:
        if self.num_losses == len(self._loss_slots):
            self._reserve(self.num_losses + 1, 0)
        self._loss_slots[self.num_losses].copy_(loss)
        self.num_losses += 1
        self.examples += examples

    def add_step(self, grad_norm: torch.Tensor | None) -> None:
        if grad_norm is not None:
            if self.num_steps == len(self._norm_slots):
                self._reserve(0, self.num_steps + 1)
            self._norm_slots[self.num_steps].copy_(grad_norm)
        self.num_steps += 1

    def loss_sum(self) -> torch.Tensor:
        return self.losses[:self.num_losses].double().sum()

    def mean_grad_norm(self) -> float:
        return float(self.grad_norms[:self.num_steps].double().mean()) if self.num_steps else math.nan

    def first_bad_step(self) -> torch.Tensor:
        """The 1-based number of the first step with a NaN/inf loss, or inf (float64, on the device)."""
        losses = self.losses[:self.num_losses]
        if not self.num_losses:
            return torch.full((), math.inf, dtype=torch.float64, device=losses.device)
        index = torch.arange(self.num_losses, device=losses.device, dtype=torch.float64)
        first = torch.where(torch.isfinite(losses), math.inf, index).min()
        return self.first_step + 1 + torch.floor(first / self.grad_accum)

    def state_dict(self) -> dict:
        """What a checkpoint keeps, so the record after a resume averages the same losses."""
        return {"first_step": self.first_step, "losses": self.losses[:self.num_losses].clone(),
                "grad_norms": self.grad_norms[:self.num_steps].clone()}

    def load_state_dict(self, state: dict) -> None:
        self.reset(state["first_step"])
        self.num_losses, self.num_steps = len(state["losses"]), len(state["grad_norms"])
        self._reserve(self.num_losses, self.num_steps)
        self.losses[:self.num_losses].copy_(state["losses"])
        self.grad_norms[:self.num_steps].copy_(state["grad_norms"])
