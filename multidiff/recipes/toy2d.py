"""Recipe: a residual-MLP denoiser on a toy 2-D point cloud, trained on the CPU.

``train(Toy2DConfig(...), out)`` trains, saves the run folder, samples with a
core sampler and measures how far the samples are from held-out real points.
Two reference figures make the distance readable:

* the Gaussian baseline: a Gaussian fitted to the training points (mean and
  covariance), i.e. the best model that knows only the first two moments;
* the real-vs-real floor: two held-out real sets of the same size, i.e. what
  a perfect model would score at this sample size.

Data splits come from one seed: training points use ``3 seed``, the
held-out sets ``3 seed + 1`` and ``3 seed + 2`` (distinct for distinct seeds).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ..backbones import MLP, MLPConfig
from ..core.losses import WEIGHTINGS
from ..core.precond import PRECONDITIONERS, Precond
from ..core.samplers import SAMPLERS
from ..core.schedules import SCHEDULES
from ..data import TOY2D, ShuffledBatches, make_toy2d
from ..metrics import DISTANCES, fit_gaussian, sample_gaussian
from ..train import (TrainConfig, Trainer, from_pretrained, generate, load_config, remove_checkpoints,
                     save_pretrained)
from ..atomic import atomic_write, atomic_write_bytes, atomic_write_json
from ..train.distributed import barrier
from ..runtime import cpu_threads
from .common import check_fields, final_loss, loss_weighting, make_schedule, noise_embedding, seeded_model

NAME = "toy2d"


@dataclass(frozen=True)
class Toy2DConfig:
    dataset: str = "moons"  # one of multidiff.data.TOY2D
    steps: int = 3000
    batch_size: int = 256
    lr: float = 2e-3
    ema_decay: float = 0.995  # averages the last ~200 steps; after 3000 the initial weights weigh 0.995^3000 < 1e-6
    seed: int = 0  # data split, initial weights, training noise
    # model: make_toy2d scales every set to unit std, hence sigma_data = 1
    width: int = 64
    depth: int = 3
    schedule: str = "edm"  # one of multidiff.core.schedules.SCHEDULES
    prediction: str = "edm"  # one of multidiff.core.precond.PRECONDITIONERS
    weighting: str = "edm"  # one of multidiff.core.losses.WEIGHTINGS
    sigma_data: float = 1.0
    # data and evaluation
    num_train: int = 20_000
    num_eval: int = 5000  # the real-vs-real floor shrinks like 1/sqrt(num_eval)
    sampler: str = "unipc"  # one of multidiff.core.samplers.SAMPLERS
    sample_steps: int = 32
    threads: int = 1  # torch CPU threads while training and sampling (see multidiff.runtime.cpu_threads)
    # run folder: checkpoints (RUN/checkpoints) every so many steps and at the end; resume continues the newest
    checkpoint_every: int = 1000
    resume: bool = False

    def __post_init__(self):
        check_fields(self, {"dataset": TOY2D, "schedule": SCHEDULES, "prediction": PRECONDITIONERS,
                            "weighting": WEIGHTINGS, "sampler": SAMPLERS},
                     at_least_one=("steps", "batch_size", "width", "depth", "num_train", "num_eval", "sample_steps",
                                   "threads"), non_negative=("seed",), positive=("lr", "sigma_data"))
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0 (0: only at the end), got {self.checkpoint_every}")
        if self.batch_size > self.num_train:
            raise ValueError(f"batch_size ({self.batch_size}) cannot exceed num_train ({self.num_train})")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")


def default_out(config: Toy2DConfig) -> Path:
    return Path("runs") / f"{NAME}-{config.dataset}-seed{config.seed}"


# ---------------------------------------------------------------- model and data


def build_model(config: Toy2DConfig) -> Precond:
    """The untrained denoiser; its initial weights depend on ``config.seed`` only."""
    schedule = make_schedule(config.schedule, config.sigma_data)
    backbone_config = MLPConfig(dim=2, width=config.width, depth=config.depth, embedding=noise_embedding(schedule))
    return seeded_model(lambda: MLP(backbone_config), config.seed, config.prediction, schedule, config.sigma_data)


def _split(config: Toy2DConfig, split: str, n: int) -> torch.Tensor:
    offset = {"train": 0, "heldout": 1, "reference": 2}[split]
    return make_toy2d(config.dataset, n, seed=3 * config.seed + offset)["x"]


# ---------------------------------------------------------------- the recipe's entry points


def train_config(config: Toy2DConfig) -> TrainConfig:
    """The engine's settings: constant learning rate and an EMA without warm-up, as
    the figures in docs/toy2d.md were measured (0.995^3000 leaves no trace of the
    initial weights anyway)."""
    return TrainConfig(steps=config.steps, lr=config.lr, ema_decay=config.ema_decay, ema_warmup=False,
                       seed=config.seed, log_every=max(1, min(100, config.steps // 10)),
                       checkpoint_every=config.checkpoint_every)


def train(config: Toy2DConfig = Toy2DConfig(), out: str | os.PathLike | None = None, *,
          progress: bool = False) -> Path:
    """Train, save, sample and evaluate; returns the run folder, which holds
    config.json, model/ema.safetensors, metrics.jsonl, eval.json, samples.png/.npz
    and checkpoints/. Without ``config.resume`` earlier checkpoints are deleted and
    the run starts over; with it, the run continues from the newest one. Under
    ``torchrun`` every process trains, rank 0 alone saves and evaluates."""
    run_dir = Path(out) if out is not None else default_out(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = build_model(config)
    batches = ShuffledBatches({"x": _split(config, "train", config.num_train)}, config.batch_size, seed=config.seed)
    with cpu_threads(config.threads):
        trainer = Trainer(model, train_config(config), run_dir=run_dir,
                          weighting=loss_weighting(config.weighting, config.sigma_data), progress=progress)
        if not config.resume and trainer.dist.is_main:
            remove_checkpoints(run_dir)
        result = trainer.fit(batches, resume=config.resume)
    if not trainer.dist.is_main:
        barrier(trainer.dist)  # wait for rank 0's export and evaluation
        return run_dir
    save_pretrained(result.model, {"recipe": NAME, **asdict(config)}, run_dir, ema=result.ema)
    samples = _generate(result.ema, config, num=config.num_eval, progress=progress)
    gaussian = _gaussian_baseline(config, config.num_eval, seed=0)
    report = _evaluate(config, samples, gaussian, seed=0)
    report.update(train_seconds=round(result.seconds, 2), steps=config.steps, final_loss=final_loss(run_dir))
    atomic_write_json(run_dir / "eval.json", report)
    write_samples(samples, run_dir / "samples", run_dir, title=f"model ({config.sampler}, {config.sample_steps} steps)",
                  extra_panels=[("Gaussian baseline", gaussian)])
    barrier(trainer.dist)
    return run_dir


def read_config(run_dir: str | os.PathLike) -> Toy2DConfig:
    """The config of a toy2d run folder (reads config.json only)."""
    return _recipe_config(run_dir, load_config(run_dir)["config"])


def load_run(run_dir: str | os.PathLike) -> tuple[Precond, Toy2DConfig]:
    """The EMA model and the config of a toy2d run folder."""
    model, saved = from_pretrained(run_dir)
    return model, _recipe_config(run_dir, saved)


def _recipe_config(run_dir, saved: dict) -> Toy2DConfig:
    if saved.get("recipe") != NAME:
        raise ValueError(f"{str(run_dir)!r} was written by recipe {saved.get('recipe')!r}, not {NAME!r}")
    known = {f.name for f in fields(Toy2DConfig)}
    return Toy2DConfig(**{k: v for k, v in saved.items() if k in known})


def sample(run_dir: str | os.PathLike, *, num: int, sampler: str | None = None, steps: int | None = None,
           seed: int = 0, progress: bool = False, label: int | None = None,
           guidance: float | None = None) -> torch.Tensor:
    """``num`` points (num, 2) from a trained run, with its sampler and steps unless given."""
    _unconditional(label, guidance)
    model, config = load_run(run_dir)
    return _generate(model, config, num=num, sampler=sampler, steps=steps, seed=seed, progress=progress)


def evaluate(run_dir: str | os.PathLike, *, num: int | None = None, sampler: str | None = None,
             steps: int | None = None, seed: int = 0, progress: bool = False, guidance: float | None = None) -> dict:
    """Distances from fresh samples to held-out points, next to the Gaussian baseline and the floor."""
    _unconditional(None, guidance)
    model, config = load_run(run_dir)
    num = config.num_eval if num is None else num
    samples = _generate(model, config, num=num, sampler=sampler, steps=steps, seed=seed, progress=progress)
    return _evaluate(config, samples, _gaussian_baseline(config, num, seed), seed=seed, sampler=sampler, steps=steps)


def _unconditional(label, guidance) -> None:
    if label is not None or guidance is not None:
        raise ValueError(f"toy2d models are unconditional: they take no {'label' if label is not None else 'guidance'}")


def calibration_problem(run_dir: str | os.PathLike, num: int):
    """What ``multidiff calibrate`` calibrates: the EMA model on batches of ``num`` points."""
    from ..train.calibration import CalibrationProblem

    model, _ = load_run(run_dir)
    return CalibrationProblem(model, model, (num, 2), None, None)


def _generate(model: Precond, config: Toy2DConfig, *, num: int, sampler: str | None = None,
              steps: int | None = None, seed: int = 0, progress: bool = False) -> torch.Tensor:
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    with cpu_threads(config.threads):
        return generate(model, (num, 2), sampler=config.sampler if sampler is None else sampler,
                        steps=config.sample_steps if steps is None else steps, seed=seed, progress=progress)


def _gaussian_baseline(config: Toy2DConfig, n: int, seed: int) -> torch.Tensor:
    mean, covariance = fit_gaussian(_split(config, "train", config.num_train))
    return sample_gaussian(mean, covariance, n, torch.Generator().manual_seed(seed)).float()


def _evaluate(config: Toy2DConfig, samples: torch.Tensor, gaussian: torch.Tensor, *, seed: int,
              sampler: str | None = None, steps: int | None = None) -> dict:
    n = samples.shape[0]
    heldout, reference = _split(config, "heldout", n), _split(config, "reference", n)
    report = {"dataset": config.dataset, "num": n, "sampler": config.sampler if sampler is None else sampler,
              "sample_steps": config.sample_steps if steps is None else steps, "seed": seed}
    for name, distance in DISTANCES.items():
        report[name] = {"model": distance(samples, heldout), "gaussian_baseline": distance(gaussian, heldout),
                        "real_floor": distance(reference, heldout)}
    return report


def write_samples(samples: torch.Tensor, stem: str | os.PathLike, run_dir: str | os.PathLike, *,
                  title: str = "samples", extra_panels: list[tuple[str, torch.Tensor]] = ()) -> list[Path]:
    """Write ``stem.npz`` (array ``samples``) and ``stem.png`` (held-out data beside the samples)."""
    config = read_config(run_dir)
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    points = samples.detach().cpu().float().numpy()
    npz, png = stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".png")

    def write_npz(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object, so numpy does not append ".npz" to the temporary name
            np.savez(f, samples=points)

    atomic_write(npz, write_npz)
    panels = [(f"{config.dataset}: held-out data", _split(config, "heldout", len(points))), *extra_panels,
              (title, samples)]
    atomic_write_bytes(png, scatter_png(panels))
    return [png, npz]


def scatter_png(panels: list[tuple[str, torch.Tensor]], size: float = 3.2) -> bytes:
    """Side-by-side scatter plots with shared axes, as PNG bytes."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(size * len(panels), size), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), sharex=True, sharey=True, squeeze=False)[0]
    for ax, (title, points) in zip(axes, panels):
        points = torch.as_tensor(points).detach().cpu().float()
        ax.scatter(points[:, 0], points[:, 1], s=1.5, alpha=0.5, linewidths=0, color="tab:blue")
        ax.set_title(title, fontsize=9)
        ax.set_aspect("equal")
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
