"""Process-level helpers shared by every layer (no imports from multidiff)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch CPU threads, then restore the previous count. Small
    models run faster on one thread: the threading overhead outweighs the gain,
    and on a busy CPU OpenMP's spin-waiting made 2 threads ~5x slower per step
    than 1 for the toy MLP (measured)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
