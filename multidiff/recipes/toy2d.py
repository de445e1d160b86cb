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
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from ..atomic import atomic_write_bytes, atomic_write_npz
from ..backbones import MLP, MLPConfig
from ..core.precond import Precond
from ..data import TOY2D, make_toy2d
from ..metrics.toy2d import DISTANCES, fit_gaussian, sample_gaussian
from ..runtime import cpu_threads
from ..train import generate
from .base import Domain, RecipeConfig
from .common import check_fields, loss_weighting, make_schedule, noise_embedding, seeded_model
from .registry import register

NAME = "toy2d"


@dataclass(frozen=True)
class Toy2DConfig(RecipeConfig):
    recipe: ClassVar[str] = NAME
    dataset: str = "moons"  # one of multidiff.data.TOY2D
    batch_size: int = 256
    lr: float = 2e-3
    ema_decay: float = 0.995  # averages the last ~200 steps; after 3000 the initial weights weigh 0.995^3000 < 1e-6
    # model: make_toy2d scales every set to unit std, hence sigma_data = 1
    sigma_data: float = 1.0
    width: int = 64
    depth: int = 3
    # data and evaluation
    num_train: int = 20_000
    num_eval: int = 5000  # the real-vs-real floor shrinks like 1/sqrt(num_eval)
    sample_steps: int = 32
    threads: int = 1  # torch CPU threads while training and sampling (see multidiff.runtime.cpu_threads)

    def __post_init__(self):
        super().__post_init__()
        check_fields(self, {"dataset": TOY2D}, at_least_one=("width", "depth", "num_train", "num_eval", "threads"))
        if self.batch_size > self.num_train:
            raise ValueError(f"batch_size ({self.batch_size}) cannot exceed num_train ({self.num_train})")


def points(config: Toy2DConfig, split: str, n: int) -> torch.Tensor:
    """``n`` points of ``split`` (train, heldout or reference) of the run's data set and seed."""
    offset = {"train": 0, "heldout": 1, "reference": 2}[split]
    return make_toy2d(config.dataset, n, seed=3 * config.seed + offset)["x"]


class Toy2D(Domain):
    """The smallest real domain: 2-D points, an MLP, distances to held-out points."""

    name = "a toy2d"
    configs = {NAME: Toy2DConfig}
    examples = "points"

    def default_out(self, config: Toy2DConfig) -> Path:
        return Path("runs") / f"{NAME}-{config.dataset}-seed{config.seed}"

    def load_data(self, config: Toy2DConfig, *, progress: bool = False) -> torch.Tensor:
        return points(config, "train", config.num_train)

    def build_model(self, config: Toy2DConfig, data=None) -> Precond:
        """The untrained denoiser; its initial weights depend on ``config.seed`` only."""
        schedule = make_schedule(config.schedule, config.sigma_data)
        backbone_config = MLPConfig(dim=2, width=config.width, depth=config.depth,
                                    embedding=noise_embedding(schedule))
        return seeded_model(lambda: MLP(backbone_config), config.seed, config.prediction, schedule,
                            config.sigma_data)

    def training_set(self, config: Toy2DConfig, data: torch.Tensor) -> dict:
        return {"x": data}

    def trainer_options(self, config: Toy2DConfig, data) -> dict:
        return {"weighting": loss_weighting(config.weighting, config.sigma_data)}

    def after_training(self, run_dir: Path, config: Toy2DConfig, data, ema: Precond, *, progress: bool) -> dict:
        samples = _generate(ema, config, num=config.num_eval, progress=progress)
        gaussian = _gaussian_baseline(config, config.num_eval, seed=0)
        report = _evaluate(config, samples, gaussian, seed=0)
        write_samples(samples, run_dir / "samples", run_dir,
                      title=f"model ({config.sampler}, {config.sample_steps} steps)",
                      extra_panels=[("Gaussian baseline", gaussian)])
        return report


def build_model(config: Toy2DConfig) -> Precond:
    """The untrained denoiser; its initial weights depend on ``config.seed`` only."""
    return DOMAIN.build_model(config, None)


def read_config(run_dir: str | os.PathLike) -> Toy2DConfig:
    """The config of a toy2d run folder (reads config.json only)."""
    return DOMAIN.read_config(run_dir)


def load_run(run_dir: str | os.PathLike) -> tuple[Precond, Toy2DConfig]:
    """The EMA model and the config of a toy2d run folder."""
    return DOMAIN.load_run(run_dir)


def default_out(config: Toy2DConfig) -> Path:
    return DOMAIN.default_out(config)


def train(config: Toy2DConfig = Toy2DConfig(), out: str | os.PathLike | None = None, *,
          progress: bool = False) -> Path:
    """Train, save, sample and evaluate (see :meth:`Domain.train`); the run folder also holds
    samples.png/.npz (held-out data, the Gaussian baseline and the model's samples side by side)."""
    return DOMAIN.train(config, out, progress=progress)


def sample(run_dir: str | os.PathLike, *, num: int, sampler: str | None = None, steps: int | None = None,
           seed: int = 0, progress: bool = False, label: int | None = None,
           guidance: float | None = None) -> torch.Tensor:
    """``num`` points (num, 2) from a trained run, with its sampler and steps unless given."""
    _unconditional(label, guidance)
    model, config = load_run(run_dir)
    return _generate(model, config, num=num, sampler=sampler, steps=steps, seed=seed, progress=progress)

def evaluate(run_dir: str | os.PathLike, *, num: int | None = None, sampler: str | None = None,
             steps: int | None = None, seed: int = 0, progress: bool = False,
             guidance: float | None = None) -> dict:
    """Distances from fresh samples to held-out points, next to the Gaussian baseline and the floor."""
    _unconditional(None, guidance)
    model, config = load_run(run_dir)
    num = config.num_eval if num is None else num
    samples = _generate(model, config, num=num, sampler=sampler, steps=steps, seed=seed, progress=progress)
    return _evaluate(config, samples, _gaussian_baseline(config, num, seed), seed=seed, sampler=sampler,
                     steps=steps)

def calibration_problem(run_dir: str | os.PathLike, num: int):
    """What ``multidiff calibrate`` calibrates: the EMA model on batches of ``num`` points."""
    from ..train.calibration import CalibrationProblem

    model, _ = load_run(run_dir)
    return CalibrationProblem(model, model, (num, 2), None, None)


def _unconditional(label, guidance) -> None:
    if label is not None or guidance is not None:
        raise ValueError(f"toy2d models are unconditional: they take no {'label' if label is not None else 'guidance'}")


def _generate(model: Precond, config: Toy2DConfig, *, num: int, sampler: str | None = None,
              steps: int | None = None, seed: int = 0, progress: bool = False) -> torch.Tensor:
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    with cpu_threads(config.threads):
        return generate(model, (num, 2), sampler=config.sampler if sampler is None else sampler,
                        steps=config.sample_steps if steps is None else steps, seed=seed, progress=progress)


def _gaussian_baseline(config: Toy2DConfig, n: int, seed: int) -> torch.Tensor:
    mean, covariance = fit_gaussian(points(config, "train", config.num_train))
    return sample_gaussian(mean, covariance, n, torch.Generator().manual_seed(seed)).float()


def _evaluate(config: Toy2DConfig, samples: torch.Tensor, gaussian: torch.Tensor, *, seed: int,
              sampler: str | None = None, steps: int | None = None) -> dict:
    n = samples.shape[0]
    heldout, reference = points(config, "heldout", n), points(config, "reference", n)
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
    xy = samples.detach().cpu().float().numpy()
    npz, png = stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".png")
    atomic_write_npz(npz, {"samples": xy})
    panels = [(f"{config.dataset}: held-out data", points(config, "heldout", len(xy))), *extra_panels,
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


DOMAIN = Toy2D(sample=sample, evaluate=evaluate, write_samples=write_samples, calibration=calibration_problem)
register(DOMAIN, {NAME: "residual-MLP denoiser on a 2-D point cloud (moons, spiral, ...), CPU, < 1 min"})
