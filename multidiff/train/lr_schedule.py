"""Learning rate per optimizer step: linear warm-up, then constant or cosine decay
(Loshchilov & Hutter 2017, SGDR's cosine without restarts).

The rate is a pure function of the step, so a checkpoint needs only the step
and these settings to resume the schedule exactly."""

from __future__ import annotations

import math

from .config import TrainConfig


def lr_at(config: TrainConfig, step: int) -> float:
    """The learning rate of optimizer step ``step`` (0 for the first step).

    Warm-up: ``lr (step + 1) / warmup_steps`` for the first ``warmup_steps``
    steps. Then ``lr`` (constant) or ``lr (r + (1 - r) (1 + cos(pi p)) / 2)``
    (cosine), ``r = min_lr_ratio``, ``p`` going from 0 right after warm-up to 1
    at the last step ``steps - 1`` (and staying 1 beyond it)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.decay == "constant":
        return config.lr
    decay_steps = config.steps - 1 - config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / decay_steps) if decay_steps > 0 else 1.0
    ratio = config.min_lr_ratio
    return config.lr * (ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def lr_schedule_state(config: TrainConfig, step: int) -> dict:
    """What a checkpoint records of the schedule (JSON): its settings and the last rate used."""
    return {"lr": config.lr, "warmup_steps": config.warmup_steps, "decay": config.decay,
            "min_lr_ratio": config.min_lr_ratio, "steps": config.steps,
            "last_lr": lr_at(config, step - 1) if step > 0 else None}
