"""Training (layer 3): the training loop, EMA, run folders (save/load) and sampling helpers."""

from .checkpoint import CheckpointError, Pretrained, from_pretrained, load_config, save_pretrained
from .ema import EMA
from .generate import generate
from .loop import TrainConfig, TrainResult, train

__all__ = ["EMA", "CheckpointError", "Pretrained", "TrainConfig", "TrainResult", "from_pretrained", "generate",
           "load_config", "save_pretrained", "train"]
