"""The training engine: one loop for every adapter, on one process or many (DDP).

Each optimizer step sets the learning rate (:mod:`.lr_schedule`), runs
``grad_accum`` micro-batches through the loss (under bf16 autocast on CUDA),
averages the per-example losses, back-propagates, clips the global gradient
norm, takes an AdamW step and updates the EMA. Every ``log_every`` steps the
ranks agree on the mean loss and on whether any loss was NaN/inf (which stops
the run with a ``FloatingPointError`` before anything is saved); rank 0 then
writes a metrics record, calls ``on_sample`` every ``sample_every`` steps and
writes a checkpoint every ``checkpoint_every`` steps and at the end.

Under ``torchrun`` the model runs in DistributedDataParallel, each rank draws
its own slice of every batch (``batches.shard``) and its own noise; the
weights, hence the EMA, stay identical on all ranks (checked at each
checkpoint). See docs/training.md.
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..core.losses import snr
from . import rng
from .config import TrainConfig
from .distributed import (DistInfo, all_gather_bytes, all_reduce, assert_same_on_all_ranks, barrier,
                          init_distributed)
from .ema import EMA
from .interval import Interval
from .lr_schedule import lr_at, lr_schedule_state
from .objective import LossFn, Objective, batch_size_of, denoising_objective, to_device
from .progress import progress_bar
from .run_checkpoints import (CheckpointError, latest_checkpoint, list_checkpoints, quarantine,
                              remove_stale_temporaries, write_checkpoint)
from .runlog import MetricsLog
from .tree import from_bytes, to_bytes

SampleHook = Callable[[int, nn.Module, "Path | None"], None]


@dataclass
class TrainResult:
    model: nn.Module  # the raw weights, in eval mode
    ema: nn.Module  # the EMA weights, in eval mode
    seconds: float  # training time of the whole run, earlier sessions included
    history: list[dict] = field(default_factory=list)  # the records logged in this call
    step: int = 0  # optimizer steps taken in total


class Trainer:
    """Trains ``model`` with ``config``. With a ``run_dir`` it writes
    ``metrics.jsonl``, TensorBoard scalars (``tensorboard/``, when installed)
    and checkpoints (``checkpoints/step-N``) there, and can resume.

    ``loss_fn(model, batch, generator) -> (B,)`` defaults to the denoising loss
    under ``weighting``; ``on_sample(step, ema_model, run_dir)`` is called on
    rank 0 every ``config.sample_every`` steps (RNG states are restored after
    it, so it never changes the training run)."""

    def __init__(self, model: nn.Module, config: TrainConfig = TrainConfig(), *, run_dir=None,
                 loss_fn: LossFn | None = None, weighting: Callable = snr, on_sample: SampleHook | None = None,
                 progress: bool = False, device=None, metrics_path=None):
        self.config = config
        self.dist: DistInfo = init_distributed(device)
        self.device = self.dist.device
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.metrics_path = metrics_path if metrics_path is not None else (
            self.run_dir / "metrics.jsonl" if self.run_dir is not None else None)
        self.on_sample = on_sample
        self.progress = progress and self.dist.is_main
        self.autocast = config.autocast if config.autocast is not None else self.device.type == "cuda"
        self.model = model.to(self.device)
        objective = Objective(self.model, loss_fn if loss_fn is not None else denoising_objective(weighting))
        if self.dist.distributed:  # broadcasts rank 0's weights, so every rank starts equal
            objective = DistributedDataParallel(
                objective, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=config.find_unused_parameters)
        self.objective = objective
        # foreach: PyTorch's multi-tensor AdamW, its default on CUDA; on the CPU the default per-tensor loop
        # is slower (~3 ms a step for the toy2d MLP) and gives the same numbers
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, betas=config.betas,
                                           weight_decay=config.weight_decay, foreach=True)
        self.ema = EMA(self.model, config.ema_decay, warmup=config.ema_warmup)  # after DDP's broadcast
        if config.compile:  # in place, so the state_dict keys stay the same; after the EMA's deep copy
            getattr(self.model, "backbone", self.model).compile()
        self.noise = torch.Generator(device=self.device)  # sigmas and noise of this rank
        self.step = 0
        self.seconds = 0.0  # of earlier sessions
        self.last_checkpoint: Path | None = None
        self.interval = Interval(config.log_every, config.grad_accum, self.device)
        self._params = list(self.model.parameters())

    # ------------------------------------------------------------ the loop

    def fit(self, batches: Iterator[dict], *, resume: bool = False, stop_at: int | None = None) -> TrainResult:
        """Train until ``config.steps`` (or ``stop_at``, for a run split over
        sessions) on ``batches``, an iterator of dict batches; to checkpoint it
        must have ``state_dict()/load_state_dict()`` (e.g. ``ShuffledBatches``).
        ``resume=True`` continues from the newest readable checkpoint in ``run_dir``."""
        config, info = self.config, self.dist
        end = config.steps if stop_at is None else min(stop_at, config.steps)
        batches = self._prepare(batches)
        self._start(batches, resume)
        log = MetricsLog(self.metrics_path if info.is_main else None,
                         resume_step=self.step if resume else None,
                         tensorboard_dir=self.run_dir / "tensorboard"
                         if info.is_main and self.run_dir is not None and config.tensorboard else None)
        started = self.interval.started = time.perf_counter()
        self.model.train()
        try:
            with progress_bar(config.steps, "train", self.progress, initial=self.step) as bar:
                while self.step < end:
                    self._train_step(batches)
                    bar.update(1)
                    step, last = self.step, self.step == end
                    recording = step % config.log_every == 0 or last
                    # the same decisions on every rank, whether or not it has a hook: they meet in collectives
                    sampling = bool(config.sample_every) and step % config.sample_every == 0
                    saving = self.run_dir is not None and (
                        last or (config.checkpoint_every and step % config.checkpoint_every == 0))
                    if recording or sampling or saving:
                        self._check_finite(step, weights=saving)
                    if recording:
                        self._log(step, batches, log, bar, started)
                    if sampling and info.is_main and self.on_sample is not None:
                        self._sample(step)
                    if saving:
                        self._checkpoint(step, batches, started)
        finally:
            log.close()
        assert_same_on_all_ranks(self.ema.module, info, "EMA")  # DDP: identical steps give identical averages
        self.seconds += time.perf_counter() - started
        self.model.eval()
        return TrainResult(self.model, self.ema.module, self.seconds, log.history, self.step)

    def _train_step(self, batches: Iterator[dict]) -> None:
        config = self.config
        lr = lr_at(config, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        for micro in range(config.grad_accum):
            batch = to_device(next(batches), self.device)
            syncing = not self.dist.distributed or micro == config.grad_accum - 1
            with nullcontext() if syncing else self.objective.no_sync():  # DDP: all-reduce once per step
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                    loss = self.objective(batch, self.noise).float().mean()
                (loss / config.grad_accum if config.grad_accum > 1 else loss).backward()
            self.interval.add_loss(loss.detach(), batch_size_of(batch) * self.dist.world_size)
        clipped = config.grad_clip > 0
        self.interval.add_step(torch.nn.utils.clip_grad_norm_(self._params, config.grad_clip) if clipped else None)
        self.optimizer.step()
        self.ema.update(self.model)
        self.step += 1

    # ------------------------------------------------------------ sync points

    def _check_finite(self, step: int, weights: bool) -> None:
        """Stop (on every rank) if a loss since the last check, or a weight, is NaN/inf."""
        bad = self.interval.first_bad_step()
        weights_ok = torch.ones((), dtype=torch.float64, device=self.device)
        if weights:
            weights_ok = torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all().double()
        flags = all_reduce(torch.stack([bad, weights_ok]), self.dist, op="min")
        first_bad, weights_ok = flags.tolist()
        if math.isfinite(first_bad):
            problem = f"the training loss became NaN or infinite at step {int(first_bad)}"
        elif not weights_ok:
            problem = f"the weights became NaN or infinite by step {step}"
        else:
            return
        where = (f"the last good checkpoint is {str(self.last_checkpoint)!r}" if self.last_checkpoint is not None
                 else "no checkpoint was written")
        raise FloatingPointError(
            f"{problem} (detected at step {step}); nothing was saved after it and {where}. To fix it, lower the "
            f"learning rate (now {self.config.lr}) or add warm-up (warmup_steps={self.config.warmup_steps}), keep "
            f"gradient clipping on (grad_clip={self.config.grad_clip}) and check the data for NaN/inf; then train "
            f"again, with resume=True to start from the last good checkpoint")

    def _log(self, step: int, batches, log: MetricsLog, bar, started: float) -> None:
        interval = self.interval
        loss_sum = all_reduce(interval.loss_sum(), self.dist)
        now = time.perf_counter()
        record = {"step": step, "loss": float(loss_sum) / (interval.num_losses * self.dist.world_size),
                  "lr": lr_at(self.config, step - 1)}
        if self.config.grad_clip > 0:
            record["grad_norm"] = interval.mean_grad_norm()  # the same on every rank (DDP syncs gradients)
        record["examples_per_s"] = round(interval.examples / max(now - interval.started, 1e-9), 1)
        if hasattr(batches, "epoch"):
            record["epoch"] = batches.epoch
        record["seconds"] = round(self.seconds + now - started, 3)
        if self.dist.is_main:
            log.write(record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", ex_per_s=f"{record['examples_per_s']:.0f}", refresh=False)
        interval.reset(first_step=step)

    def _sample(self, step: int) -> None:
        state = rng.capture(self.noise)
        try:
            with torch.no_grad():
                self.on_sample(step, self.ema.module, self.run_dir)
        finally:
            rng.restore(state, self.noise)

    # ------------------------------------------------------------ checkpoints

    def _prepare(self, batches):
        if self.dist.distributed and getattr(batches, "world_size", 1) != self.dist.world_size:
            if not hasattr(batches, "shard"):
                raise TypeError(f"under DDP each rank needs its own share of the data: pass a batch source with "
                                f"shard(rank, world_size) (e.g. multidiff.data.ShuffledBatches), not "
                                f"{type(batches).__name__}")
            batches = batches.shard(self.dist.rank, self.dist.world_size)
        if self.run_dir is not None and not hasattr(batches, "state_dict"):
            raise TypeError(f"checkpoints need a resumable batch source with state_dict()/load_state_dict() "
                            f"(e.g. multidiff.data.ShuffledBatches), got {type(batches).__name__}; or train "
                            f"without run_dir")
        return batches

    def _start(self, batches, resume: bool) -> None:
        """Load the newest good checkpoint (resume) or seed every RNG for a fresh run."""
        found = None
        if self.run_dir is not None:
            if self.dist.is_main:
                remove_stale_temporaries(self.run_dir)
            barrier(self.dist)
            if resume:
                found = latest_checkpoint(self.run_dir)
            elif existing := list_checkpoints(self.run_dir):
                raise FileExistsError(
                    f"{str(self.run_dir)!r} already holds checkpoints (up to step {existing[-1][0]}); pass "
                    f"resume=True to continue that run, or use a new run folder (or delete its checkpoints/) "
                    f"to start over")
        if found is None:
            rng.reseed(self.config.seed, self.dist.rank, self.noise)
            return
        path, state, skipped = found
        for damaged, reason in skipped:
            warnings.warn(f"skipping a damaged checkpoint: {reason}", stacklevel=3)
        barrier(self.dist)  # every rank has read the folder before rank 0 renames damaged ones
        if self.dist.is_main:
            for damaged, _ in skipped:
                quarantine(damaged)
        self._load(path, state, batches)

    def _load(self, path: Path, state: dict, batches) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.ema.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(f"checkpoint {str(path)!r} does not fit this model or optimizer ({err}); resume "
                                  f"with the model and settings that wrote it, or start a new run folder") from None
        batches.load_state_dict(state["data"])
        self.step, self.seconds, self.last_checkpoint = state["step"], state["seconds"], path
        ranks = state["ranks"]
        if len(ranks) == self.dist.world_size:
            mine = ranks[self.dist.rank]
            rng.restore(mine["rng"], self.noise)
            self.interval.load_state_dict(mine["interval"])  # the record in progress continues
        else:  # the data position carries over; the noise cannot
            warnings.warn(f"{str(path)!r} was written by {len(ranks)} processes, this run has "
                          f"{self.dist.world_size}: random numbers are re-seeded, so the run continues "
                          f"correctly but not bit-identically", stacklevel=3)
            rng.reseed(rng.derived_seed(self.config.seed, self.step, "resize"), self.dist.rank, self.noise)
            self.interval.reset(first_step=self.step)

    def _checkpoint(self, step: int, batches, started: float) -> None:
        info = self.dist
        assert_same_on_all_ranks(self.model, info, "model")
        assert_same_on_all_ranks(self.ema.module, info, "EMA")
        mine = {"rng": rng.capture(self.noise), "interval": self.interval.state_dict()}
        ranks = [from_bytes(blob) for blob in all_gather_bytes(to_bytes(mine), info)]
        if info.is_main:
            state = {"step": step, "seconds": self.seconds + time.perf_counter() - started,
                     "world_size": info.world_size, "train_config": asdict(self.config),
                     "model": self.model.state_dict(), "ema": self.ema.state_dict(),
                     "optimizer": self.optimizer.state_dict(), "lr_schedule": lr_schedule_state(self.config, step),
                     "data": batches.state_dict(), "ranks": ranks}
            self.last_checkpoint = write_checkpoint(self.run_dir, step, state, self.config.keep_last)
        else:
            self.last_checkpoint = self.run_dir / "checkpoints" / f"step-{step:08d}"
        barrier(info)


def train(model: nn.Module, batches: Iterator[dict], config: TrainConfig = TrainConfig(), *,
          weighting: Callable = snr, log_path=None, progress: bool = False) -> TrainResult:
    """Train ``model`` in place on ``batches`` without a run folder (no checkpoints);
    metrics go to ``log_path`` (JSON lines) when given. See :class:`Trainer`."""
    return Trainer(model, config, weighting=weighting, metrics_path=log_path, progress=progress).fit(batches)
