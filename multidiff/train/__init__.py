"""Training (layer 3): the training engine (AdamW, LR schedule, EMA, checkpoints with
exact resume, DDP), run folders (save/load) and sampling helpers."""

from .checkpoint import CheckpointError, Pretrained, from_pretrained, load_config, save_pretrained
from .config import TrainConfig
from .distributed import DistInfo, init_distributed, shutdown_distributed
from .ema import EMA
from .generate import generate
from .loop import Trainer, TrainResult, train
from .lr_schedule import lr_at
from .objective import denoising_objective
from .run_checkpoints import latest_checkpoint, list_checkpoints, read_checkpoint, remove_checkpoints

__all__ = ["EMA", "CheckpointError", "DistInfo", "Pretrained", "TrainConfig", "TrainResult", "Trainer",
           "denoising_objective", "from_pretrained", "generate", "init_distributed", "latest_checkpoint",
           "list_checkpoints", "load_config", "lr_at", "read_checkpoint", "remove_checkpoints", "save_pretrained",
           "shutdown_distributed", "train"]
