"""Image recipes: class-conditional generation with classifier-free guidance,
and 2x super-resolution, on the training engine.

=================  ==========================================================
``digits``         the CPU default: sklearn's 8x8 digits, U-Net "tiny",
                   class-conditional; trains in ~4 minutes on 2 cores
``fashion_unet``   Fashion-MNIST 28x28, U-Net "base" (~36M), one GPU
``fashion_dit``    Fashion-MNIST 28x28, DiT-S/2 (~32M), one GPU
``superres``       2x super-resolution of MNIST-5k (14x14 -> 28x28),
                   a U-Net conditioned on the upsampled low-resolution image
=================  ==========================================================

All four share :class:`ImageConfig`; each recipe is a subclass that changes
only the defaults, so ``--set key=value`` works the same everywhere.

Class-conditional training drops the label (replaces it with the null class
``num_classes``) with probability ``label_dropout``, drawing from the
engine's generator, so a resumed run drops the same labels. Sampling applies
classifier-free guidance with ``guidance`` (1: the plain conditional model).

Evaluation (``eval.json``, ``multidiff eval``): the Frechet distance in the
feature space of the dataset's bundled classifier, against the test split,
beside the real-vs-real floor (training images, as many as samples), and
the classifier's accuracy on the samples' intended labels. Super-resolution
is measured on test images: the same numbers for the super-resolved images,
for a bilinear baseline, their PSNR against the originals and how well they
agree with the low-resolution input.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..adapters.image import (decode, downsample, encode, low_res_error, save_grid, super_resolution_data,
                              training_data, upsample)
from ..backbones import DiT, DiTConfig, UNet2D, UNet2DConfig
from ..core.losses import WEIGHTINGS
from ..core.precond import PRECONDITIONERS, Precond
from ..core.samplers import SAMPLERS, default_sigmas, sample as run_sampler
from ..core.schedules import SCHEDULES
from ..data import ShuffledBatches
from ..data.images import IMAGE_DATASETS, ImageDataset, load_image_dataset
from ..train import Trainer, from_pretrained, load_config, remove_checkpoints, save_pretrained
from ..atomic import atomic_write, atomic_write_json
from ..train.distributed import barrier
from ..train.progress import sampling_progress
from .common import (check_fields, config_from_saved, device_of, engine_config, final_loss, guided, label_dropout_loss,
                     loss_weighting, make_schedule, noise_embedding, sampling_device, seeded_model, threads_of)

TASKS = ("generate", "superres")
BACKBONES = ("unet", "dit")
DEVICES = ("auto", "cpu", "cuda")
SUPERRES_FACTOR = 2
CLASSIFIER_DATASETS = ("digits", "mnist5k", "fashion")  # those with a bundled feature classifier


@dataclass(frozen=True)
class ImageConfig:
    recipe: ClassVar[str] = "digits"
    # data
    dataset: str = "digits"  # one of multidiff.data.images.IMAGE_DATASETS
    data_root: str = ""  # fashion: the IDX folder (default: Debian's); folder: your images
    image_size: int = 32  # folder only: the side images are resized to
    grayscale: bool = False  # folder only
    task: str = "generate"  # "generate" (samples of the data) or "superres" (2x, from the low-res image)
    conditional: bool = True  # class labels as conditioning (generate only)
    label_dropout: float = 0.1  # probability of the null label in training, for classifier-free guidance
    guidance: float = 1.0  # classifier-free guidance scale at sampling (1: the plain conditional model)
    # model
    backbone: str = "unet"  # "unet" (UNet2D) or "dit" (DiT)
    preset: str = "tiny"  # the backbone's size preset: tiny, small or base
    width: int = 0  # base_channels (unet) or hidden_size (dit); 0: the preset's
    schedule: str = "edm"  # one of multidiff.core.schedules.SCHEDULES
    prediction: str = "edm"  # one of multidiff.core.precond.PRECONDITIONERS
    weighting: str = "edm"  # one of multidiff.core.losses.WEIGHTINGS
    sigma_data: float = 0.5
    # training
    steps: int = 4000
    batch_size: int = 128
    lr: float = 2e-3
    warmup_steps: int = 200
    decay: str = "cosine"  # to lr / 10 at the last step
    ema_decay: float = 0.999
    seed: int = 0  # initial weights, training noise and batch order (the data split is fixed)
    device: str = "auto"  # auto: CUDA when available
    bf16: bool = True  # bf16 autocast of the backbone on CUDA (ignored on the CPU)
    compile: bool = False  # torch.compile the backbone
    threads: int = 0  # torch CPU threads; 0: torch's default
    # sampling and evaluation
    sampler: str = "unipc"  # one of multidiff.core.samplers.SAMPLERS
    sample_steps: int = 24
    num_eval: int = 1000  # samples drawn for eval.json (at most the training-set size: the floor needs as many)
    # run folder
    checkpoint_every: int = 1000  # 0: only at the end
    sample_every: int = 1000  # a grid in RUN/progress/ every so many steps; 0: never
    resume: bool = False

    def __post_init__(self):
        check_fields(self, {"dataset": IMAGE_DATASETS, "schedule": SCHEDULES, "prediction": PRECONDITIONERS,
                            "weighting": WEIGHTINGS, "sampler": SAMPLERS, "task": TASKS, "backbone": BACKBONES,
                            "device": DEVICES},
                     at_least_one=("steps", "batch_size", "sample_steps", "num_eval", "image_size"),
                     non_negative=("width", "warmup_steps", "seed", "threads", "checkpoint_every", "sample_every"),
                     positive=("lr", "sigma_data"))
        presets = ("tiny", "small", "base")
        if self.preset not in presets:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of: {', '.join(presets)}")
        if not 0 <= self.label_dropout < 1:
            raise ValueError(f"label_dropout must be in [0, 1), got {self.label_dropout}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.guidance < 0:
            raise ValueError(f"guidance must be >= 0 (1: no guidance), got {self.guidance}")
        if self.task == "superres" and self.conditional:
            raise ValueError("the superres task is conditioned on the low-resolution image, not on labels; "
                             "set conditional=false")
        if self.guidance != 1 and not self.conditional:
            raise ValueError(f"guidance={self.guidance} needs a class-conditional model; set guidance=1 or "
                             f"conditional=true")
        if self.dataset == "folder" and not self.data_root:
            raise ValueError("the folder dataset needs data_root=PATH (a folder of PNG/JPEG files)")


@dataclass(frozen=True)
class DigitsConfig(ImageConfig):
    recipe: ClassVar[str] = "digits"
    guidance: float = 1.25


@dataclass(frozen=True)
class FashionUNetConfig(ImageConfig):
    recipe: ClassVar[str] = "fashion_unet"
    dataset: str = "fashion"
    preset: str = "base"
    guidance: float = 1.5
    steps: int = 40_000
    batch_size: int = 128
    lr: float = 2e-4
    warmup_steps: int = 1000
    ema_decay: float = 0.9999
    num_eval: int = 10_000
    checkpoint_every: int = 5000
    sample_every: int = 5000


@dataclass(frozen=True)
class FashionDiTConfig(FashionUNetConfig):
    recipe: ClassVar[str] = "fashion_dit"
    backbone: str = "dit"
    lr: float = 3e-4
    batch_size: int = 256


@dataclass(frozen=True)
class SuperResConfig(ImageConfig):
    recipe: ClassVar[str] = "superres"
    dataset: str = "mnist5k"
    task: str = "superres"
    conditional: bool = False
    preset: str = "tiny"
    steps: int = 2000
    batch_size: int = 64
    num_eval: int = 500
    checkpoint_every: int = 500
    sample_every: int = 500


CONFIGS: dict[str, type[ImageConfig]] = {cls.recipe: cls for cls in
                                         (DigitsConfig, FashionUNetConfig, FashionDiTConfig, SuperResConfig)}


def default_out(config: ImageConfig) -> Path:
    return Path("runs") / f"{config.recipe}-seed{config.seed}"


# ---------------------------------------------------------------- data and model


def load_data(config: ImageConfig) -> ImageDataset:
    options = {}
    if config.dataset in ("fashion", "folder") and config.data_root:
        options["root"] = config.data_root
    if config.dataset == "folder":
        options.update(size=config.image_size, grayscale=config.grayscale)
    return load_image_dataset(config.dataset, **options)


def training_set(config: ImageConfig, data: ImageDataset) -> dict:
    if config.task == "superres":
        return super_resolution_data(encode(data.train["x"]), factor=SUPERRES_FACTOR)
    return training_data(data.train, conditional=config.conditional)


def build_model(config: ImageConfig, shape: tuple[int, int, int], num_classes: int) -> Precond:
    """The untrained denoiser for images of ``shape = (C, H, W)``; its weights depend on ``config.seed`` only."""
    schedule = make_schedule(config.schedule, config.sigma_data)
    channels, height, width = shape
    options = dict(image_size=(height, width), in_channels=channels,
                   num_classes=num_classes if config.conditional else 0,
                   cond_channels=channels if config.task == "superres" else 0, embedding=noise_embedding(schedule))
    if config.width:
        options["base_channels" if config.backbone == "unet" else "hidden_size"] = config.width
    if config.backbone == "unet":
        backbone_config, backbone_cls = UNet2DConfig.preset(config.preset, **options), UNet2D
    else:
        backbone_config, backbone_cls = DiTConfig.preset(config.preset, **options), DiT
    return seeded_model(lambda: backbone_cls(backbone_config), config.seed, config.prediction, schedule,
                        config.sigma_data)


# ---------------------------------------------------------------- train


def train(config: ImageConfig = DigitsConfig(), out: str | os.PathLike | None = None, *,
          progress: bool = False) -> Path:
    """Train, save, sample and evaluate; returns the run folder with config.json,
    model/ema.safetensors, metrics.jsonl, checkpoints/, progress/step-N.png,
    samples.png/.npz and eval.json. Without ``config.resume`` earlier checkpoints
    are deleted; with it, the run continues from the newest one."""
    run_dir = Path(out) if out is not None else default_out(config)
    data = load_data(config)
    if config.task == "superres" and (data.shape[1] % SUPERRES_FACTOR or data.shape[2] % SUPERRES_FACTOR):
        raise ValueError(f"super-resolution by {SUPERRES_FACTOR} needs an image size divisible by it, got "
                         f"{data.shape[1]}x{data.shape[2]}")
    model = build_model(config, data.shape, data.num_classes)  # checks the image size against the backbone
    train_set = training_set(config, data)
    if config.batch_size > len(data.train["x"]):
        raise ValueError(f"batch_size ({config.batch_size}) exceeds the {len(data.train['x'])} training images of "
                         f"{config.dataset!r}")
    run_dir.mkdir(parents=True, exist_ok=True)
    loss_fn = partial(label_dropout_loss, weighting=loss_weighting(config.weighting, config.sigma_data),
                      null_class=data.num_classes, dropout=config.label_dropout if config.conditional else 0.0)
    on_sample = partial(_progress_grid, config=config, data=data)
    with threads_of(config):
        trainer = Trainer(model, engine_config(config), run_dir=run_dir, loss_fn=loss_fn, on_sample=on_sample,
                          progress=progress, device=device_of(config))
        if not config.resume and trainer.dist.is_main:
            remove_checkpoints(run_dir)
        result = trainer.fit(ShuffledBatches(train_set, config.batch_size, seed=config.seed), resume=config.resume)
        if not trainer.dist.is_main:
            barrier(trainer.dist)  # wait for rank 0's export and evaluation
            return run_dir
        save_pretrained(result.model, {"recipe": config.recipe, "num_classes": data.num_classes, **asdict(config)},
                        run_dir, ema=result.ema)
        num = min(config.num_eval, len(data.train["x"]))
        drawn = _draw(result.ema, config, data, num=num, seed=0, progress=progress)
        report = _evaluate(config, data, drawn)
    report.update(train_seconds=round(result.seconds, 2), steps=result.step, final_loss=final_loss(run_dir))
    atomic_write_json(run_dir / "eval.json", report)
    write_samples(_first(drawn, 100), run_dir / "samples", run_dir)
    barrier(trainer.dist)
    return run_dir


def _first(drawn: dict, n: int) -> dict:
    return {key: value[:n] for key, value in drawn.items()}


def _progress_grid(step: int, ema: Precond, run_dir: Path | None, *, config: ImageConfig, data: ImageDataset) -> None:
    """The grid written during training: 10 per row (one class per column when conditional)."""
    if run_dir is None:
        return
    drawn = _draw(ema, config, data, num=min(100, len(data.test["x"])), seed=0)
    write_samples(drawn, run_dir / "progress" / f"step-{step:07d}", run_dir, npz=False)


# ---------------------------------------------------------------- sampling


def _guided(model: Precond, config: ImageConfig, num_classes: int, guidance: float):
    return guided(model, num_classes, guidance if config.conditional else 1.0)


def _draw(model: Precond, config: ImageConfig, data: ImageDataset, *, num: int, seed: int = 0,
          label: int | None = None, guidance: float | None = None, sampler: str | None = None,
          steps: int | None = None, progress: bool = False) -> dict[str, torch.Tensor]:
    """Samples in data space ``{"samples": (num, C, H, W) in [0, 1], "labels": (num,)}``, labels
    cycling through the classes (or all ``label``); for superres, ``num`` test images
    super-resolved, with ``low_res`` and ``reference`` beside them."""
    sampler = config.sampler if sampler is None else sampler
    steps = config.sample_steps if steps is None else steps
    guidance = config.guidance if guidance is None else guidance
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    sigmas = default_sigmas(model.schedule, steps, sampler, sigma_data=config.sigma_data)
    out: dict[str, torch.Tensor] = {}
    if config.task == "superres":
        pick = torch.randperm(len(data.test["x"]), generator=generator)[:num]
        reference = encode(data.test["x"][pick])  # (num, C, H, W) in [-1, 1]
        low_res = downsample(reference, SUPERRES_FACTOR)
        cond = {"image": upsample(low_res, SUPERRES_FACTOR).to(device)}
        out.update(low_res=decode(low_res), reference=decode(reference), labels=data.test["label"][pick])
        denoiser, shape = model, reference.shape
    else:
        cond = None
        if config.conditional:
            labels = torch.arange(num) % data.num_classes if label is None else torch.full((num,), label)
            cond, out["labels"] = labels.to(device), labels
        denoiser, shape = _guided(model, config, data.num_classes, guidance), (num, *data.shape)
    x = (torch.randn(shape, generator=generator) * sigmas[0]).to(device)
    options = {} if cond is None else {"cond": cond}
    with sampling_progress(len(sigmas) - 1, f"sample ({sampler})", progress) as callback, torch.no_grad():
        x = run_sampler(denoiser, x, sigmas, method=sampler, generator=generator, callback=callback, **options)
    return {"samples": decode(x.float().cpu()), **out}


# ---------------------------------------------------------------- run folders


def read_config(run_dir: str | os.PathLike) -> ImageConfig:
    return config_from_saved(run_dir, load_config(run_dir)["config"], CONFIGS, "an image")


def load_run(run_dir: str | os.PathLike, device=None) -> tuple[Precond, ImageConfig]:
    model, saved = from_pretrained(run_dir, device=device)
    return model, config_from_saved(run_dir, saved, CONFIGS, "an image")


def calibration_problem(run_dir: str | os.PathLike, num: int):
    """What ``multidiff calibrate`` calibrates: the model as ``sample`` draws by default (labels
    cycling through the classes, the run's guidance) on batches of ``num`` images."""
    from ..train.calibration import CalibrationProblem

    model, config = load_run(run_dir)
    if config.task == "superres":
        raise ValueError("superres samples are conditioned on test images; calibrate a generative image run")
    data = load_data(config)
    cond = torch.arange(num) % data.num_classes if config.conditional else None
    return CalibrationProblem(model, _guided(model, config, data.num_classes, config.guidance), (num, *data.shape),
                              cond, config.sigma_data)


def _check_label(config: ImageConfig, num_classes: int, label: int) -> None:
    if not 0 <= label < num_classes:
        raise ValueError(f"label must be in [0, {num_classes}) for {config.dataset!r}, got {label}")


def sample(run_dir: str | os.PathLike, *, num: int, sampler: str | None = None, steps: int | None = None,
           seed: int = 0, progress: bool = False, label: int | None = None,
           guidance: float | None = None) -> dict[str, torch.Tensor]:
    """``num`` samples from a trained run: ``{"samples": (num, C, H, W) float in [0, 1], "labels": (num,)}``
    (labels for a class-conditional run; superres adds ``low_res`` and ``reference``)."""
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    config = read_config(run_dir)
    data = load_data(config)
    num_classes = data.num_classes
    if label is not None:
        if not config.conditional:
            raise ValueError(f"this {config.recipe} run is not class-conditional, so it takes no label")
        _check_label(config, num_classes, label)
    if guidance is not None:
        if guidance < 0:
            raise ValueError(f"guidance must be >= 0 (1: no guidance), got {guidance}")
        if guidance != 1 and not config.conditional:
            raise ValueError(f"this {config.recipe} run is not class-conditional; guidance needs labels")
    if config.task == "superres" and num > len(data.test["x"]):
        raise ValueError(f"superres samples test images; num must be <= {len(data.test['x'])}, got {num}")
    model, _ = load_run(run_dir, device=sampling_device(config))
    with threads_of(config):
        return _draw(model, config, data, num=num, seed=seed, label=label, guidance=guidance, sampler=sampler,
                     steps=steps, progress=progress)


def inpaint_test(run_dir: str | os.PathLike, *, num: int, region: str | None = "bottom", label: int | None = None,
                 guidance: float | None = None, reconstruction_scale: float = 0.0, sampler: str | None = None,
                 steps: int | None = None, seed: int = 0, progress: bool = False) -> dict[str, torch.Tensor]:
    """Hide ``region`` (see :func:`~multidiff.adapters.image.inpaint_mask`) of ``num`` test images
    drawn at random (from ``seed``) and fill it with the trained model: ``{"samples", "masked"
    (the input, hole black), "reference", "mask", "labels"}``, images in [0, 1]. A class-conditional
    model fills without a label (the null class) unless ``label`` names one, then with ``guidance``
    (default: the run's). ``reconstruction_scale`` > 0 adds reconstruction guidance."""
    from ..adapters.image import MASK_REGIONS, inpaint, inpaint_mask

    config = read_config(run_dir)
    region = "bottom" if region is None else region
    if config.task != "generate":
        raise ValueError(f"inpainting needs a generative image run; {config.recipe} is a {config.task} run")
    if region not in MASK_REGIONS:
        raise ValueError(f"unknown mask region {region!r}; choose one of: {', '.join(MASK_REGIONS)}")
    if reconstruction_scale < 0:
        raise ValueError(f"reconstruction_scale must be >= 0, got {reconstruction_scale}")
    data = load_data(config)
    if not 1 <= num <= len(data.test["x"]):
        raise ValueError(f"inpainting fills test images; num must be in [1, {len(data.test['x'])}], got {num}")
    if (label is not None or guidance is not None) and not config.conditional:
        raise ValueError(f"this {config.recipe} run is not class-conditional, so it takes no label or guidance")
    if label is not None:
        _check_label(config, data.num_classes, label)
    if guidance is not None and label is None:
        raise ValueError("guidance steers towards a label; give --label too (without one the hole is filled "
                         "unconditionally)")
    sampler = config.sampler if sampler is None else sampler
    steps = config.sample_steps if steps is None else steps
    model, _ = load_run(run_dir, device=sampling_device(config))
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(data.test["x"]), generator=generator)[:num]
    reference = encode(data.test["x"][pick])
    mask = inpaint_mask(num, *data.shape[1:], region, generator=generator)
    denoiser, cond = model, None
    if config.conditional:
        cond = torch.full((num,), data.num_classes if label is None else label)
        if label is not None:
            denoiser = _guided(model, config, data.num_classes, config.guidance if guidance is None else guidance)
    sigmas = default_sigmas(model.schedule, steps, sampler, sigma_data=config.sigma_data)
    with threads_of(config), sampling_progress(len(sigmas) - 1, f"inpaint ({sampler})", progress) as callback:
        with torch.set_grad_enabled(reconstruction_scale > 0):  # reconstruction guidance differentiates the model
            filled = inpaint(denoiser, reference.to(device), mask.to(device), sigmas, method=sampler,
                             cond=None if cond is None else cond.to(device), generator=generator,
                             reconstruction_scale=reconstruction_scale, callback=callback)
    return {"samples": decode(filled.detach().float().cpu()), "masked": decode(reference * mask - (1 - mask)),
            "reference": decode(reference), "mask": mask, "labels": data.test["label"][pick]}


def evaluate(run_dir: str | os.PathLike, *, num: int | None = None, sampler: str | None = None,
             steps: int | None = None, seed: int = 0, progress: bool = False,
             guidance: float | None = None) -> dict:
    """The metrics of fresh samples (see the module docstring), as a JSON-able dict."""
    config = read_config(run_dir)
    data = load_data(config)
    num = min(config.num_eval, len(data.train["x"])) if num is None else num
    limit = len(data.test["x"]) if config.task == "superres" else len(data.train["x"])
    if not 2 <= num <= limit:
        raise ValueError(f"num must be in [2, {limit}] for {config.recipe} on {config.dataset!r} (the floor "
                         f"compares as many real images), got {num}")
    drawn = sample(run_dir, num=num, sampler=sampler, steps=steps, seed=seed, progress=progress, guidance=guidance)
    with threads_of(config):
        return _evaluate(config, data, drawn, sampler=sampler, steps=steps, guidance=guidance, seed=seed)


def _evaluate(config: ImageConfig, data: ImageDataset, drawn: dict, *, sampler=None, steps=None, guidance=None,
              seed: int = 0) -> dict:
    from ..metrics.classifier import evaluate_images, load_classifier

    report = {"recipe": config.recipe, "dataset": config.dataset, "task": config.task,
              "num": len(drawn["samples"]), "sampler": config.sampler if sampler is None else sampler,
              "sample_steps": config.sample_steps if steps is None else steps, "seed": seed}
    if config.conditional:
        report["guidance"] = config.guidance if guidance is None else guidance
    if config.task == "superres":
        report["low_res_mse"] = float(low_res_error(encode(drawn["samples"]), encode(drawn["low_res"]),
                                                    SUPERRES_FACTOR).mean())
        report["psnr_db"] = _psnr(drawn["samples"], drawn["reference"])
        bilinear = upsample(encode(drawn["low_res"]), SUPERRES_FACTOR, "bilinear").clamp(-1, 1)
        report["bilinear_psnr_db"] = _psnr(decode(bilinear), drawn["reference"])
        report["bilinear_low_res_mse"] = float(low_res_error(bilinear, encode(drawn["low_res"]),
                                                             SUPERRES_FACTOR).mean())
    if config.dataset not in CLASSIFIER_DATASETS:
        report["note"] = (f"no bundled classifier for {config.dataset!r}, so no Frechet distance or accuracy; "
                          f"they exist for {', '.join(CLASSIFIER_DATASETS)}")
        return report
    classifier = load_classifier(config.dataset, train_if_missing=False)
    metrics = evaluate_images(drawn["samples"], drawn.get("labels"), data.test["x"], classifier,
                              real_train=data.train["x"], seed=seed)
    report.update({key: metrics[key] for key in ("frechet", "frechet_floor", "frechet_floor_std",
                                                 "classifier_accuracy", "classifier_test_accuracy")})
    report["frechet_over_floor"] = metrics["frechet"] / metrics["frechet_floor"]
    if config.task == "superres":
        baseline = evaluate_images(decode(bilinear), drawn["labels"], data.test["x"], classifier)
        report["bilinear_frechet"] = baseline["frechet"]
        report["bilinear_classifier_accuracy"] = baseline["classifier_accuracy"]
    return report


def _psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean PSNR in dB of [0, 1] images against ``reference``."""
    mse = (images.double() - reference.double()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1.0 / mse)).mean())


# ---------------------------------------------------------------- writing samples


def write_samples(drawn: dict[str, torch.Tensor], stem: str | os.PathLike, run_dir: str | os.PathLike | None = None,
                  *, npz: bool = True) -> list[Path]:
    """``stem.png``: a grid (10 per row; super-resolution and inpainting: the input, the
    sample and the original in turn, row by row) and ``stem.npz`` with every array of ``drawn`` (``samples`` float32
    in [0, 1], (N, C, H, W); ``labels`` int64)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    samples = drawn["samples"]
    inputs = (upsample(drawn["low_res"], SUPERRES_FACTOR) if "low_res" in drawn
              else drawn.get("masked"))  # super-resolution or inpainting: input, output, original in turn
    if inputs is not None:
        rows = []
        for start in range(0, len(samples), 10):
            part = slice(start, start + 10)
            rows.append(torch.cat([inputs[part], samples[part], drawn["reference"][part]]))
        images, nrow = torch.cat(rows), min(10, len(samples))
    else:
        images, nrow = samples, 10
    paths = [save_grid(images, stem.with_name(stem.name + ".png"), nrow=nrow, value_range=(0.0, 1.0))]
    if npz:
        arrays = {key: value.numpy() for key, value in drawn.items()}

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object, so numpy does not append ".npz" to the temporary name
                np.savez(f, **arrays)

        paths.append(atomic_write(stem.with_name(stem.name + ".npz"), write))
    return paths


__all__ = ["CONFIGS", "DigitsConfig", "FashionDiTConfig", "FashionUNetConfig", "ImageConfig", "SuperResConfig",
           "build_model", "evaluate", "inpaint_test", "label_dropout_loss", "load_run", "read_config", "sample",
           "train", "write_samples"]
