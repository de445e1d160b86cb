"""Pieces every recipe builds the same way: the schedule, the seeded backbone inside its
preconditioning, the loss weighting, and the last logged loss of a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..core.losses import WEIGHTINGS, edm
from ..core.precond import Precond, make_precond
from ..core.schedules import SCHEDULES, DiscreteVP, RectifiedFlow


def make_schedule(name: str, sigma_data: float):
    """Schedule ``name`` of :data:`SCHEDULES`; EDM's takes the data's ``sigma_data``."""
    schedule_cls = SCHEDULES[name]
    return schedule_cls(sigma_data=sigma_data) if name == "edm" else schedule_cls()


def noise_embedding(schedule) -> str:
    """DDPM-style schedules and rectified flow condition on a timestep in [0, 1000) ("positional");
    the rest on log(sigma) / 4 ("fourier")."""
    return "positional" if isinstance(schedule, (DiscreteVP, RectifiedFlow)) else "fourier"


def seeded_model(build: Callable[[], nn.Module], seed: int, prediction: str, schedule,
                 sigma_data: float) -> Precond:
    """``build()``'s backbone, initialised from ``seed`` alone (the global RNG is left as it was),
    wrapped in the ``prediction`` preconditioning."""
    with torch.random.fork_rng(devices=[]):  # weights are built on the CPU; leave CUDA alone
        torch.manual_seed(seed)
        backbone = build()
    options = {"sigma_data": sigma_data} if prediction == "edm" else {}
    return make_precond(prediction, backbone, schedule, **options)


def loss_weighting(name: str, sigma_data: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Weighting ``name`` of :data:`WEIGHTINGS`; EDM's takes the data's ``sigma_data``."""
    return edm(sigma_data) if name == "edm" else WEIGHTINGS[name]


def final_loss(run_dir: Path) -> float | None:
    """The last logged training loss (also when a resumed run had nothing left to train)."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])["loss"] if lines else None
