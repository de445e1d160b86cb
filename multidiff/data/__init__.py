"""Data (layer 2): dataset loading and generation -> dict batches of tensors."""

from .batches import ShuffledBatches, random_batches
from .toy2d import TOY2D, make_toy2d

__all__ = ["TOY2D", "make_toy2d", "random_batches", "ShuffledBatches"]
