"""The training engine's settings: one frozen dataclass, saved as JSON in every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

LR_DECAYS = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000  # optimizer steps
    # AdamW (Loshchilov & Hutter 2019) and its learning-rate schedule
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0  # linear warm-up from lr / warmup_steps to lr
    decay: str = "constant"  # after warm-up: "constant", or "cosine" down to lr * min_lr_ratio at the last step
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    grad_accum: int = 1  # micro-batches per optimizer step
    # EMA of the weights: decay_t = min(ema_decay, (1 + t) / (10 + t)) after t updates when ema_warmup
    ema_decay: float = 0.999
    ema_warmup: bool = True
    # what the run writes (when a run folder is given)
    log_every: int = 100  # a metrics record (JSON lines, TensorBoard) every so many steps
    checkpoint_every: int = 0  # 0: only at the end
    keep_last: int = 2  # checkpoints kept; older ones are deleted
    sample_every: int = 0  # call on_sample every so many steps; 0: never
    tensorboard: bool = True  # also log to TensorBoard when it is installed
    seed: int = 0  # sigmas and noise (rank 0 draws exactly what a one-process run draws)
    # speed: bf16 autocast (None: on CUDA only) and torch.compile of the backbone
    autocast: bool | None = None
    compile: bool = False
    find_unused_parameters: bool = False  # DDP: set when some parameters get no gradient in a step

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))  # a JSON round trip gives a list
        for name in ("steps", "log_every", "grad_accum", "keep_last"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "checkpoint_every", "sample_every", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip}")
        if self.decay not in LR_DECAYS:
            raise ValueError(f"unknown lr decay {self.decay!r}; choose one of: {', '.join(LR_DECAYS)}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
