"""Minibatches from an in-memory dataset held as a dict of equally long tensors."""

from __future__ import annotations

from typing import Iterator

import torch


def random_batches(data: dict[str, torch.Tensor], batch_size: int,
                   generator: torch.Generator | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Endless shuffled minibatches: each epoch is a fresh permutation, walked in
    order; a last partial batch is dropped so every batch has ``batch_size`` rows."""
    sizes = {key: len(value) for key, value in data.items()}
    if not sizes or len(set(sizes.values())) != 1:
        raise ValueError(f"data must be a non-empty dict of tensors of one length, got lengths {sizes}")
    n = next(iter(sizes.values()))
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [1, {n}] (the dataset size), got {batch_size}")
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            index = order[start:start + batch_size]
            yield {key: value[index] for key, value in data.items()}
