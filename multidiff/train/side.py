"""Side networks: the one small fit loop and the one save/load pair for the networks that
sit beside a diffusion model (value models, behaviour-cloning and inverse-dynamics MLPs,
keyword classifiers, metric classifiers).

The loop owns the optimiser (AdamW), the learning-rate decay and the progress bar; the
caller's ``batch_loss(step)`` owns the data: it draws its batch from its own generator and
returns the mean loss, so every random draw happens in the caller's order and a seeded
fit repeats bit for bit. Weights are saved as safetensors beside a JSON record, both
written atomically (record last), and loaded without unpickling anything.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..atomic import atomic_write_bytes, atomic_write_json
from .progress import progress_bar

LR_DECAYS = ("constant", "cosine_to_tenth", "cosine_to_zero")


def _lr_scheduler(optimizer: torch.optim.Optimizer, decay: str, steps: int, lr: float):
    if decay == "constant":
        return None
    if decay == "cosine_to_tenth":  # PyTorch's recursive cosine annealing, down to lr / 10
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr / 10)
    if decay == "cosine_to_zero":  # the closed-form half cosine from lr to 0
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / steps)))
    raise ValueError(f"unknown lr decay {decay!r}; choose one of: {', '.join(LR_DECAYS)}")


def fit(module: nn.Module, batch_loss: Callable[[int], torch.Tensor], *, steps: int, lr: float,
        weight_decay: float = 0.01, decay: str = "constant", desc: str = "fit", progress: bool = False) -> float:
    """Minimise ``batch_loss(step)`` over ``module``'s parameters for ``steps`` AdamW steps
    (Loshchilov & Hutter 2019; ``weight_decay`` 0.01 is PyTorch's default) with the learning
    rate held or decayed by ``decay`` (one of :data:`LR_DECAYS`). Returns the last loss."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = _lr_scheduler(optimizer, decay, steps, lr)
    with progress_bar(steps, desc, progress) as bar:
        for step in range(steps):
            loss = batch_loss(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            bar.update(1)
    return loss.item()


def save_side_network(state_of: nn.Module, weights: str | os.PathLike, record: str | os.PathLike,
                      info: dict) -> None:
    """``state_of``'s weights (CPU, contiguous) to the safetensors file ``weights`` and ``info`` to the
    JSON file ``record``, each atomically, the record last (a reader never pairs new weights with an old
    record it could trust)."""
    from safetensors.torch import save

    state = {name: tensor.detach().cpu().contiguous() for name, tensor in state_of.state_dict().items()}
    atomic_write_bytes(Path(weights), save(state))
    atomic_write_json(Path(record), info)


def load_side_network(weights: str | os.PathLike, record: str | os.PathLike) -> tuple[dict, dict] | None:
    """``(info, state_dict)`` saved by :func:`save_side_network`, or None when ``weights`` does not exist;
    a damaged or missing record or weights file raises ValueError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights, record = Path(weights), Path(record)
    if not weights.is_file():
        return None
    try:
        return json.loads(record.read_text()), load_file(weights)
    except (OSError, ValueError, KeyError, SafetensorError) as error:
        raise ValueError(f"{str(weights)!r} or its record {record.name!r} is damaged ({error}); train it again") \
            from None


__all__ = ["LR_DECAYS", "fit", "load_side_network", "save_side_network"]
