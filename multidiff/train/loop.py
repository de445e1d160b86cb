"""A small training loop for denoisers: AdamW, EMA, per-example sigmas from the
schedule, a loss from :mod:`multidiff.core.losses`, a tqdm bar and a JSON-lines log.

Each step draws a batch ``{"x": x0, "cond": optional}``, one sigma per
example from ``model.schedule.sample_sigmas``, and minimises the mean of
``denoising_loss`` (one value per example) under the given weighting.
Checkpoint/resume, distributed data parallel and EMA warm-up belong to the
full engine and are not here.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from ..core.losses import denoising_loss, snr
from ..core.precond import Precond
from .ema import EMA
from .progress import progress_bar


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    ema_decay: float = 0.999
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    log_every: int = 100
    seed: int = 0  # sigmas and noise

    def __post_init__(self):
        if self.steps < 1 or self.log_every < 1:
            raise ValueError(f"steps and log_every must be >= 1, got {self.steps} and {self.log_every}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip}")


@dataclass
class TrainResult:
    model: Precond  # the raw weights, in eval mode
    ema: Precond  # the EMA weights, in eval mode
    seconds: float
    history: list[dict] = field(default_factory=list)  # the logged records


def train(model: Precond, batches: Iterator[dict[str, torch.Tensor]], config: TrainConfig = TrainConfig(), *,
          weighting: Callable[[torch.Tensor], torch.Tensor] = snr, log_path: str | os.PathLike | None = None,
          progress: bool = False) -> TrainResult:
    """Train ``model`` in place for ``config.steps`` steps on ``batches``; see the module docstring.

    Every ``log_every`` steps the mean loss since the last record is written
    to ``log_path`` (JSON lines, the file is truncated first) and the bar."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas,
                                  weight_decay=config.weight_decay)
    ema = EMA(model, config.ema_decay)
    history: list[dict] = []
    log = open(log_path, "w") if log_path is not None else None
    running, count = torch.zeros((), device=device), 0
    model.train()
    start = time.perf_counter()
    try:
        with progress_bar(config.steps, "train", progress) as bar:
            for step in range(1, config.steps + 1):
                batch = next(batches)
                x0 = batch["x"].to(device)
                cond = batch["cond"].to(device) if "cond" in batch else None
                sigma = model.schedule.sample_sigmas(x0.shape[0], generator=generator, device=device)  # (B,)
                loss = denoising_loss(model, x0, sigma, weighting=weighting, cond=cond, generator=generator).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                ema.update(model)
                running, count = running + loss.detach(), count + 1
                bar.update(1)
                if step % config.log_every == 0 or step == config.steps:
                    mean_loss = float(running) / count  # the only host sync, once per record
                    if not math.isfinite(mean_loss):
                        raise FloatingPointError(f"the training loss became {mean_loss} by step {step}; lower the "
                                                 f"learning rate (now {config.lr}) or check the data for NaN/inf")
                    record = {"step": step, "loss": mean_loss, "lr": config.lr,
                              "seconds": round(time.perf_counter() - start, 3)}
                    history.append(record)
                    if log is not None:
                        log.write(json.dumps(record) + "\n")
                        log.flush()
                    bar.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
                    running, count = torch.zeros((), device=device), 0
    finally:
        if log is not None:
            log.close()
    model.eval()
    return TrainResult(model, ema.module, time.perf_counter() - start, history)
