"""The recipe base: the settings every recipe shares, and the train / evaluate skeleton, once.

A domain writes a :class:`Domain` subclass that declares only what differs (its data, its
model, its loss, what it does after training, its verbs) and registers its recipes with
:func:`multidiff.recipes.registry.register`. The skeleton owns the rest: the run folder,
the training engine, checkpoints, the export, ``eval.json`` and multi-process training.

========================  ==================================================================
``RecipeConfig``          fields every recipe has (toy2d included): data, model, training,
                          sampling, run folder
``ScalableConfig``        + what a recipe that scales from the CPU to a GPU adds: backbone
                          preset and width, warm-up and decay, device, bf16, compile, pictures
                          during training
``ClassConditionalConfig``  + class labels: conditioning, label dropout, guidance, eval size
``Domain``                the hooks and the skeleton (``train``, ``read_config``, ``load_run``)
========================  ==================================================================
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from ..atomic import atomic_write_json
from ..core.losses import WEIGHTINGS
from ..core.precond import PRECONDITIONERS, Precond
from ..core.samplers import SAMPLERS
from ..core.schedules import SCHEDULES
from ..data import ShuffledBatches
from ..train import TrainConfig, Trainer, from_pretrained, load_config, remove_checkpoints, save_pretrained
from ..train.distributed import barrier
from .common import check_fields, config_from_saved, device_of, engine_config, final_loss, threads_of

DEVICES = ("auto", "cpu", "cuda")
OPTIONAL_VERBS = ("inpaint", "infill", "plan", "calibrate")  # the CLI verbs a domain may add
OPTIONAL_ENTRY_POINTS = ("inpaint", "infill", "plan", "write_plan", "calibration")  # the functions behind them


@dataclass(frozen=True)
class RecipeConfig:
    """The settings every recipe shares; a recipe's config subclasses it and changes defaults."""

    recipe: ClassVar[str] = ""
    # data
    dataset: str = ""
    # model
    schedule: str = "edm"  # one of multidiff.core.schedules.SCHEDULES
    prediction: str = "edm"  # one of multidiff.core.precond.PRECONDITIONERS
    weighting: str = "edm"  # one of multidiff.core.losses.WEIGHTINGS
    sigma_data: float = 0.5
    # training
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    ema_decay: float = 0.999
    seed: int = 0  # initial weights, training noise and batch order
    threads: int = 0  # torch CPU threads while training and sampling; 0: torch's default
    # sampling
    sampler: str = "unipc"  # one of multidiff.core.samplers.SAMPLERS
    sample_steps: int = 24
    # run folder: checkpoints (RUN/checkpoints) every so many steps and at the end; resume continues the newest
    checkpoint_every: int = 1000  # 0: only at the end
    resume: bool = False

    def __post_init__(self):
        check_fields(self, {"schedule": SCHEDULES, "prediction": PRECONDITIONERS, "weighting": WEIGHTINGS,
                            "sampler": SAMPLERS},
                     at_least_one=("steps", "batch_size", "sample_steps"),
                     non_negative=("seed", "threads", "checkpoint_every"), positive=("lr", "sigma_data"))
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")


@dataclass(frozen=True)
class ScalableConfig(RecipeConfig):
    """A recipe sized for the CPU by default and for one GPU by its ``*_gpu`` variants."""

    preset: str = "small"  # the backbone's size preset
    width: int = 0  # the backbone's base width; 0: the preset's
    warmup_steps: int = 200
    decay: str = "cosine"  # to lr / 10 at the last step
    device: str = "auto"  # auto: CUDA when available
    bf16: bool = True  # bf16 autocast of the backbone on CUDA (ignored on the CPU)
    compile: bool = False  # torch.compile the backbone
    sample_every: int = 1000  # a picture in RUN/progress/ every so many steps; 0: never

    def __post_init__(self):
        super().__post_init__()
        check_fields(self, {"device": DEVICES}, non_negative=("width", "warmup_steps", "sample_every"))


@dataclass(frozen=True)
class ClassConditionalConfig(ScalableConfig):
    """A recipe whose data may carry class labels, sampled under classifier-free guidance."""

    conditional: bool = True  # class labels as conditioning (when the data has several classes)
    label_dropout: float = 0.1  # probability of the null label in training, for classifier-free guidance
    guidance: float = 1.0  # classifier-free guidance scale at sampling (1: the plain conditional model)
    num_eval: int = 500  # samples drawn for eval.json

    def __post_init__(self):
        super().__post_init__()
        check_fields(self, at_least_one=("num_eval",))
        if not 0 <= self.label_dropout < 1:
            raise ValueError(f"label_dropout must be in [0, 1), got {self.label_dropout}")
        if self.guidance < 0:
            raise ValueError(f"guidance must be >= 0 (1: no guidance), got {self.guidance}")
        if self.guidance != 1 and not self.conditional:
            raise ValueError(f"guidance={self.guidance} needs a class-conditional model; set guidance=1 or "
                             f"conditional=true")


def check_label_guidance(recipe: str, conditional: bool, num_classes: int, label: int | None,
                         guidance: float | None) -> None:
    """The label and guidance a sampling call asks for suit the run (ValueError naming the problem)."""
    if label is not None:
        if not conditional:
            raise ValueError(f"this {recipe} run is not class-conditional, so it takes no label")
        if not 0 <= label < num_classes:
            raise ValueError(f"label must be in [0, {num_classes}) for {recipe}, got {label}")
    if guidance is not None:
        if guidance < 0:
            raise ValueError(f"guidance must be >= 0 (1: no guidance), got {guidance}")
        if guidance != 1 and not conditional:
            raise ValueError(f"this {recipe} run is not class-conditional; guidance needs labels")


def first(drawn: dict, n: int) -> dict:
    """The first ``n`` examples of every batched tensor in ``drawn`` (other entries as they are)."""
    return {key: value[:n] if isinstance(value, torch.Tensor) and value.ndim else value
            for key, value in drawn.items()}


class Domain:
    """One domain's recipes: the hooks it declares and the skeleton they plug into.

    Hooks a domain writes: :meth:`load_data`, :meth:`build_model`, :meth:`training_set` and
    :meth:`after_training` (draw, evaluate, write what a person looks at; returns the report).
    Optional: :meth:`trainer_options` (a custom loss, pictures during training), :meth:`run_info`
    (more in config.json), :meth:`prepare_run` (files written before training),
    :meth:`engine_config`. Its entry points (``sample``, ``evaluate``, ``write_samples`` and the
    optional verbs ``inpaint``, ``infill``, ``plan`` / ``write_plan``, ``calibration``) are given
    to the constructor (see :meth:`verbs`).
    """

    name: ClassVar[str] = ""  # "an image", "a text": how errors name a run of this domain
    configs: ClassVar[dict[str, type[RecipeConfig]]] = {}  # recipe name -> its config class
    sample_options: ClassVar[tuple[str, ...]] = ()  # keyword options ``sample`` takes beyond the common ones
    examples: ClassVar[str] = "examples"  # what one training example is called in errors ("images", "clips")

    def __init__(self, *, sample: Callable, evaluate: Callable, write_samples: Callable, **verbs: Callable):
        """The domain's entry points, as its module defines them: ``sample``, ``evaluate``,
        ``write_samples`` and any of the optional verbs ``inpaint``, ``infill``, ``plan``,
        ``write_plan``, ``calibration``."""
        unknown = sorted(set(verbs) - set(OPTIONAL_ENTRY_POINTS))
        if unknown:
            raise ValueError(f"unknown verbs {unknown}; a domain may add {', '.join(OPTIONAL_ENTRY_POINTS)}")
        self.sample, self.evaluate, self.write_samples = sample, evaluate, write_samples
        for name, function in verbs.items():
            setattr(self, name, function)

    # ------------------------------------------------------------ hooks

    def load_data(self, config, *, progress: bool = False) -> Any:
        raise NotImplementedError

    def build_model(self, config, data) -> Precond:
        raise NotImplementedError

    def training_set(self, config, data) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def trainer_options(self, config, data) -> dict:
        """Extra :class:`~multidiff.train.Trainer` arguments: ``loss_fn``, ``weighting``, ``on_sample``."""
        return {}

    def run_info(self, config, data) -> dict:
        """What config.json keeps beside the config (class names, ...)."""
        return {}

    def prepare_run(self, run_dir: Path, config, data) -> None:
        """Files the run folder needs before training (a tokenizer, ...)."""

    def engine_config(self, config) -> TrainConfig:
        """The engine's settings: for a :class:`ScalableConfig`, warm-up, decay, bf16 and compile as
        configured (:func:`~multidiff.recipes.common.engine_config`); for a plain :class:`RecipeConfig`,
        a constant learning rate and an EMA without warm-up (toy2d's figures were measured so)."""
        if isinstance(config, ScalableConfig):
            return engine_config(config)
        return TrainConfig(steps=config.steps, lr=config.lr, ema_decay=config.ema_decay, ema_warmup=False,
                           seed=config.seed, log_every=max(1, min(100, config.steps // 10)),
                           checkpoint_every=config.checkpoint_every)

    def after_training(self, run_dir: Path, config, data, ema: Precond, *, progress: bool) -> dict:
        """On rank 0 after the export: draw, evaluate and write samples; returns eval.json's figures."""
        raise NotImplementedError

    # ------------------------------------------------------------ the skeleton

    def default_out(self, config) -> Path:
        return Path("runs") / f"{config.recipe}-seed{config.seed}"

    def train(self, config, out: str | os.PathLike | None = None, *, progress: bool = False) -> Path:
        """Train, save, sample and evaluate; returns the run folder (config.json, model.safetensors and ema.safetensors,
        metrics.jsonl, checkpoints/, eval.json and the domain's samples). Without ``config.resume``
        earlier checkpoints are deleted and the run starts over; with it, the run continues from the
        newest one. Under ``torchrun`` every process trains, rank 0 alone saves and evaluates."""
        run_dir = Path(out) if out is not None else self.default_out(config)
        data = self.load_data(config, progress=progress)
        model = self.build_model(config, data)
        train_set = self.training_set(config, data)
        count = len(next(iter(train_set.values())))
        if config.batch_size > count:
            raise ValueError(f"batch_size ({config.batch_size}) exceeds the {count} training {self.examples} of "
                             f"{config.dataset!r}")
        run_dir.mkdir(parents=True, exist_ok=True)
        self.prepare_run(run_dir, config, data)
        with threads_of(config):
            trainer = Trainer(model, self.engine_config(config), run_dir=run_dir, progress=progress,
                              device=device_of(config), **self.trainer_options(config, data))
            if not config.resume and trainer.dist.is_main:
                remove_checkpoints(run_dir)
            result = trainer.fit(ShuffledBatches(train_set, config.batch_size, seed=config.seed),
                                 resume=config.resume)
            if trainer.dist.is_main:
                save_pretrained(result.model, {"recipe": config.recipe, **self.run_info(config, data),
                                               **asdict(config)}, run_dir, ema=result.ema)
        if not trainer.dist.is_main:
            barrier(trainer.dist)  # wait for rank 0's export and evaluation
            return run_dir
        report = self.after_training(run_dir, config, data, result.ema, progress=progress)
        report.update(train_seconds=round(result.seconds, 2), steps=result.step, final_loss=final_loss(run_dir))
        atomic_write_json(run_dir / "eval.json", report)
        barrier(trainer.dist)
        return run_dir

    def read_config(self, run_dir: str | os.PathLike):
        """The recipe config a run folder saved (reads config.json only)."""
        return self.config_from_saved(run_dir, load_config(run_dir)["config"])

    def load_run(self, run_dir: str | os.PathLike, device=None) -> tuple[Precond, Any]:
        """The EMA model and the config of a run folder."""
        model, saved = from_pretrained(run_dir, device=device)
        return model, self.config_from_saved(run_dir, saved)

    def config_from_saved(self, run_dir, saved: dict):
        """The config rebuilt with the class of the recipe that wrote ``saved`` (a config.json
        "config"); fields the class no longer has are dropped, so older run folders still load."""
        return config_from_saved(run_dir, saved, self.configs, self.name)

    def verbs(self) -> tuple[str, ...]:
        """The optional verbs this domain has (of :data:`OPTIONAL_VERBS`)."""
        attribute = {"calibrate": "calibration"}
        return tuple(verb for verb in OPTIONAL_VERBS if callable(getattr(self, attribute.get(verb, verb), None)))


__all__ = ["ClassConditionalConfig", "DEVICES", "Domain", "OPTIONAL_ENTRY_POINTS", "OPTIONAL_VERBS", "RecipeConfig",
           "ScalableConfig", "check_label_guidance", "first"]
