"""Pieces every recipe builds the same way: the schedule, the seeded backbone inside its
preconditioning, the loss weighting, classifier-free guidance (label dropout in training, the
guided denoiser at sampling), and the last logged loss of a run."""

from __future__ import annotations

import json
from dataclasses import fields
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from ..core.guidance import ClassifierFreeGuidance
from ..core.losses import WEIGHTINGS, denoising_loss, edm
from ..core.precond import Precond, make_precond
from ..core.schedules import SCHEDULES, DiscreteVP, RectifiedFlow
from ..runtime import cpu_threads
from ..train import TrainConfig


def check_fields(config, choices: dict[str, Iterable[str]] | None = None, *, at_least_one: Iterable[str] = (),
                 non_negative: Iterable[str] = (), positive: Iterable[str] = ()) -> None:
    """The range checks every recipe config makes, with one wording: each field named in ``choices``
    must be one of its registry's names, ``at_least_one`` fields >= 1, ``non_negative`` >= 0,
    ``positive`` > 0 (a ValueError naming the field and its value)."""
    for name, registry in (choices or {}).items():
        if getattr(config, name) not in registry:
            raise ValueError(f"unknown {name} {getattr(config, name)!r}; choose one of: {', '.join(registry)}")
    for names, holds, rule in ((at_least_one, lambda v: v >= 1, ">= 1"), (non_negative, lambda v: v >= 0, ">= 0"),
                               (positive, lambda v: v > 0, "> 0")):
        for name in names:
            if not holds(getattr(config, name)):
                raise ValueError(f"{name} must be {rule}, got {getattr(config, name)}")


def make_schedule(name: str, sigma_data: float):
    """Schedule ``name`` of :data:`SCHEDULES`; EDM's takes the data's ``sigma_data``."""
    schedule_cls = SCHEDULES[name]
    return schedule_cls(sigma_data=sigma_data) if name == "edm" else schedule_cls()


def noise_embedding(schedule) -> str:
    """DDPM-style schedules and rectified flow condition on a timestep in [0, 1000) ("positional");
    the rest on log(sigma) / 4 ("fourier")."""
    return "positional" if isinstance(schedule, (DiscreteVP, RectifiedFlow)) else "fourier"


def seeded_model(build: Callable[[], nn.Module], seed: int, prediction: str, schedule,
                 sigma_data: float, **options) -> Precond:
    """``build()``'s backbone, initialised from ``seed`` alone (the global RNG is left as it was),
    wrapped in the ``prediction`` preconditioning (with ``options``, e.g. ``self_condition``)."""
    with torch.random.fork_rng(devices=[]):  # weights are built on the CPU; leave CUDA alone
        torch.manual_seed(seed)
        backbone = build()
    if prediction in ("edm", "categorical"):
        options["sigma_data"] = sigma_data
    return make_precond(prediction, backbone, schedule, **options)


def loss_weighting(name: str, sigma_data: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Weighting ``name`` of :data:`WEIGHTINGS`; EDM's takes the data's ``sigma_data``."""
    return edm(sigma_data) if name == "edm" else WEIGHTINGS[name]


def final_loss(run_dir: Path) -> float | None:
    """The last logged training loss (also when a resumed run had nothing left to train)."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])["loss"] if lines else None


def drop_labels(labels: torch.Tensor | None, generator: torch.Generator, dropout: float,
                null_class: int) -> torch.Tensor | None:
    """``labels`` with each replaced by ``null_class`` with probability ``dropout`` (one uniform draw per
    label from ``generator``); None and ``dropout == 0`` pass through untouched, drawing nothing."""
    if labels is None or dropout <= 0:
        return labels
    drop = torch.rand(labels.shape, generator=generator, device=labels.device) < dropout  # (B,)
    return torch.where(drop, torch.full_like(labels, null_class), labels)


def label_dropout_loss(model: Precond, batch: dict, generator: torch.Generator, *, weighting, dropout: float,
                       null_class: int) -> torch.Tensor:
    """The denoising loss per example with each label replaced by ``null_class`` with
    probability ``dropout`` (classifier-free guidance training, Ho & Salimans 2022).
    Everything random comes from ``generator``, so a resumed run is exact."""
    x0, cond = batch["x"], drop_labels(batch.get("cond"), generator, dropout, null_class)
    sigma = model.schedule.sample_sigmas(x0.shape[0], generator=generator, device=x0.device)  # (B,)
    return denoising_loss(model, x0, sigma, weighting=weighting, cond=cond, generator=generator)


def label_dropout_objective(config, num_classes: int, conditional: bool):
    """The engine's ``loss_fn`` of a class-conditional recipe: :func:`label_dropout_loss` with the
    config's weighting, the null class ``num_classes`` and ``config.label_dropout`` (0 when the run
    is unconditional)."""
    return partial(label_dropout_loss, weighting=loss_weighting(config.weighting, config.sigma_data),
                   null_class=num_classes, dropout=config.label_dropout if conditional else 0.0)


def guided(model: Precond, num_classes: int, guidance: float):
    """``model`` under classifier-free guidance of scale ``guidance`` with the null class
    ``num_classes`` (the model itself when ``guidance == 1``)."""
    if guidance == 1.0:
        return model
    return ClassifierFreeGuidance(model, guidance, torch.tensor([num_classes]))  # moved to cond's device


def device_of(config) -> str | None:
    """The engine's device for a recipe config with ``device`` in auto/cpu/cuda (None: auto)."""
    device = getattr(config, "device", "auto")  # toy2d's config has no device: auto
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but PyTorch sees no CUDA GPU; use device=cpu (or auto)")
    return None if device == "auto" else device


def threads_of(config):
    """A context with ``config.threads`` torch CPU threads (0: torch's default)."""
    return cpu_threads(config.threads if config.threads else torch.get_num_threads())


def engine_config(config) -> TrainConfig:
    """The training engine's settings from a recipe config (steps, lr, warm-up, cosine decay to lr / 10,
    EMA, checkpoint and picture intervals, bf16 autocast on CUDA, compile, and AdamW's weight decay
    where the recipe config has a ``weight_decay`` field, else none)."""
    return TrainConfig(steps=config.steps, lr=config.lr, weight_decay=getattr(config, "weight_decay", 0.0),
                       warmup_steps=min(config.warmup_steps, config.steps - 1),
                       decay=config.decay, min_lr_ratio=0.1, ema_decay=config.ema_decay, seed=config.seed,
                       log_every=max(1, min(100, config.steps // 10)), checkpoint_every=config.checkpoint_every,
                       sample_every=config.sample_every, autocast=None if config.bf16 else False,
                       compile=config.compile)


def config_from_saved(run_dir, saved: dict, configs: dict[str, type], kind: str):
    """The recipe config a run folder saved (``saved`` = its config.json "config"), rebuilt with the
    class of its recipe among ``configs``; fields the class no longer has are dropped."""
    if saved.get("recipe") not in configs:
        raise ValueError(f"{str(run_dir)!r} was written by recipe {saved.get('recipe')!r}, not {kind} recipe "
                         f"({', '.join(configs)})")
    cls = configs[saved["recipe"]]
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in saved.items() if k in known})


def sampling_device(config) -> str:
    """Where a saved run samples: CUDA when there is one, unless the run asked for the CPU."""
    return "cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu"
