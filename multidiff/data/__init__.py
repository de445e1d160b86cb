"""Data (layer 2): dataset loading and generation -> dict batches of tensors."""

from .batches import ShuffledBatches, random_batches
from .images import IMAGE_DATASETS, ImageDataset, dataset_info, load_image_dataset
from .text import TEXT_DATASETS, TextCorpus, load_text_dataset
from .toy2d import TOY2D, make_toy2d

__all__ = ["IMAGE_DATASETS", "ImageDataset", "TEXT_DATASETS", "TOY2D", "TextCorpus", "dataset_info", "load_image_dataset", "load_text_dataset", "make_toy2d",
           "random_batches", "ShuffledBatches"]
