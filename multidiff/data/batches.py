"""Minibatches from an in-memory dataset held as a dict of equally long tensors
(or of dicts of them, e.g. ``{"x": ..., "cond": {"image": ..., "label": ...}}``).

:class:`ShuffledBatches` is the resumable batch source of the training engine
(``multidiff.train``): its position is a small ``state_dict()`` and, under
data parallelism, ``shard(rank, world_size)`` gives each process its own slice
of every batch.
"""

from __future__ import annotations

import torch


def _lengths(data: dict, prefix: str = "") -> dict[str, int]:
    """The length of every tensor in ``data`` (nested dicts allowed, e.g. ``cond={"image", "label"}``)."""
    sizes = {}
    for key, value in data.items():
        if isinstance(value, dict):
            sizes.update(_lengths(value, f"{prefix}{key}."))
        elif isinstance(value, torch.Tensor):
            sizes[prefix + key] = len(value)
        else:
            raise TypeError(f"data[{prefix + key!r}] must be a tensor or a dict of tensors, got {type(value).__name__}")
    return sizes


def _dataset_size(data: dict) -> int:
    sizes = _lengths(data)
    if not sizes or len(set(sizes.values())) != 1:
        raise ValueError(f"data must be a non-empty dict of tensors of one length, got lengths {sizes}")
    return next(iter(sizes.values()))


def _take(data: dict, index: torch.Tensor) -> dict:
    return {key: _take(value, index) if isinstance(value, dict) else value[index] for key, value in data.items()}


class ShuffledBatches:
    """Endless shuffled minibatches of ``batch_size`` rows: each epoch is a fresh
    permutation drawn from the source's own generator and walked in order; a last
    partial batch is dropped, so every batch has ``batch_size`` rows.

    ``batch_size`` is the *global* batch. After ``shard(rank, world_size)`` all
    processes walk the same permutation (same seed) and rank ``r`` takes rows
    ``[r b, (r + 1) b)`` of each global batch, ``b = batch_size / world_size``:
    the ranks see distinct examples, and together exactly the rows one process
    would see with the whole batch.

    The state (``state_dict``) is the generator's state at the start of the
    current epoch, the epoch and the position in it: ``load_state_dict``
    redraws the same permutation and continues from the same row."""

    def __init__(self, data: dict[str, torch.Tensor], batch_size: int, *, seed: int | None = 0,
                 generator: torch.Generator | None = None, rank: int = 0, world_size: int = 1):
        self.data = data
        self.num_examples = _dataset_size(data)
        if not 1 <= batch_size <= self.num_examples:
            raise ValueError(f"batch_size must be in [1, {self.num_examples}] (the dataset size), got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if batch_size % world_size:
            raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of processes ({world_size}) "
                             f"so each rank gets an equal share of every batch")
        if generator is None:
            if seed is None:  # like torch.randperm without a generator: drawn from the global RNG
                seed = int(torch.randint(2**62, ()).item())
            generator = torch.Generator().manual_seed(seed)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.generator = generator
        self.epoch, self.position = -1, self.num_examples  # the first batch starts epoch 0
        self._order: torch.Tensor | None = None
        self._epoch_state: torch.Tensor | None = None

    def shard(self, rank: int, world_size: int) -> ShuffledBatches:
        """This source as seen by process ``rank`` of ``world_size`` (same data, generator and
        position); it shares the generator, so draw from the returned source only."""
        sharded = ShuffledBatches(self.data, self.batch_size, generator=self.generator, rank=rank,
                                  world_size=world_size)
        sharded.epoch, sharded.position = self.epoch, self.position
        sharded._order, sharded._epoch_state = self._order, self._epoch_state
        return sharded

    def __iter__(self) -> ShuffledBatches:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self.position + self.batch_size > self.num_examples:
            self._epoch_state = self.generator.get_state()
            self._order = torch.randperm(self.num_examples, generator=self.generator)
            self.epoch, self.position = self.epoch + 1, 0
        share = self.batch_size // self.world_size
        start = self.position + self.rank * share
        index = self._order[start:start + share]
        self.position += self.batch_size
        return _take(self.data, index)

    def state_dict(self) -> dict:
        """The position: JSON-able numbers plus the generator state (a uint8 tensor)."""
        state = {"num_examples": self.num_examples, "batch_size": self.batch_size, "epoch": self.epoch,
                 "position": self.position}
        if self._epoch_state is not None:
            state["epoch_generator_state"] = self._epoch_state.clone()
        else:  # no batch drawn yet
            state["generator_state"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        if state["num_examples"] != self.num_examples:
            raise ValueError(f"the saved data position is for a dataset of {state['num_examples']} examples, this one "
                             f"has {self.num_examples}; resume with the same data")
        if "epoch_generator_state" in state:
            self.generator.set_state(state["epoch_generator_state"])
            self._epoch_state = self.generator.get_state()
            self._order = torch.randperm(self.num_examples, generator=self.generator)
        else:
            self.generator.set_state(state["generator_state"])
            self._order = self._epoch_state = None
        self.epoch, self.position = state["epoch"], state["position"]


def random_batches(data: dict[str, torch.Tensor], batch_size: int,
                   generator: torch.Generator | None = None) -> ShuffledBatches:
    """Endless shuffled minibatches drawn with ``generator`` (see :class:`ShuffledBatches`)."""
    return ShuffledBatches(data, batch_size, seed=None, generator=generator)
