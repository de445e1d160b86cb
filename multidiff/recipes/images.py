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
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..adapters.image import (decode, downsample, encode, low_res_error, save_grid, super_resolution_data,
                              training_data, upsample)
from ..atomic import atomic_write_npz
from ..backbones import DiT, DiTConfig, UNet2D, UNet2DConfig
from ..core.precond import Precond
from ..core.samplers import default_sigmas
from ..data.images import IMAGE_DATASETS, ImageDataset, load_image_dataset
from ..train.generate import draw as draw_samples
from ..train.progress import sampling_progress
from .base import ClassConditionalConfig, Domain, check_label_guidance, first
from .common import (check_fields, guided, label_dropout_loss, label_dropout_objective, make_schedule,
                    noise_embedding, sampling_device, seeded_model, threads_of)
from .registry import register

TASKS = ("generate", "superres")
BACKBONES = ("unet", "dit")
SUPERRES_FACTOR = 2
CLASSIFIER_DATASETS = ("digits", "mnist5k", "fashion")  # those with a bundled feature classifier


@dataclass(frozen=True)
class ImageConfig(ClassConditionalConfig):
    recipe: ClassVar[str] = "digits"
    # data
    dataset: str = "digits"  # one of multidiff.data.images.IMAGE_DATASETS
    data_root: str = ""  # fashion: the IDX folder (default: Debian's); folder: your images
    image_size: int = 32  # folder only: the side images are resized to
    grayscale: bool = False  # folder only
    task: str = "generate"  # "generate" (samples of the data) or "superres" (2x, from the low-res image)
    # model
    backbone: str = "unet"  # "unet" (UNet2D) or "dit" (DiT)
    preset: str = "tiny"  # the backbone's size preset: tiny, small or base
    # training
    steps: int = 4000
    batch_size: int = 128
    lr: float = 2e-3
    # sampling and evaluation
    num_eval: int = 1000  # samples drawn for eval.json (at most the training-set size: the floor needs as many)

    def __post_init__(self):
        super().__post_init__()
        check_fields(self, {"dataset": IMAGE_DATASETS, "task": TASKS, "backbone": BACKBONES},
                     at_least_one=("image_size",))
        presets = ("tiny", "small", "base")
        if self.preset not in presets:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of: {', '.join(presets)}")
        if self.task == "superres" and self.conditional:
            raise ValueError("the superres task is conditioned on the low-resolution image, not on labels; "
                             "set conditional=false")
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
DESCRIPTIONS = {
    "digits": "class-conditional U-Net on sklearn's 8x8 digits with classifier-free guidance, CPU, ~4 min",
    "fashion_unet": "class-conditional U-Net (~36M) on Fashion-MNIST 28x28, sized for one GPU",
    "fashion_dit": "class-conditional DiT-S/2 (~32M) on Fashion-MNIST 28x28, sized for one GPU",
    "superres": "2x super-resolution of MNIST-5k digits (14x14 -> 28x28), U-Net conditioned on the low-res image",
}


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


# ---------------------------------------------------------------- the domain


class Images(Domain):
    name = "an image"
    configs = CONFIGS
    examples = "images"

    def load_data(self, config: ImageConfig, *, progress: bool = False) -> ImageDataset:
        data = load_data(config)
        if config.task == "superres" and (data.shape[1] % SUPERRES_FACTOR or data.shape[2] % SUPERRES_FACTOR):
            raise ValueError(f"super-resolution by {SUPERRES_FACTOR} needs an image size divisible by it, got "
                             f"{data.shape[1]}x{data.shape[2]}")
        return data

    def build_model(self, config: ImageConfig, data: ImageDataset) -> Precond:
        return build_model(config, data.shape, data.num_classes)  # checks the image size against the backbone

    def training_set(self, config: ImageConfig, data: ImageDataset) -> dict:
        return training_set(config, data)

    def trainer_options(self, config: ImageConfig, data: ImageDataset) -> dict:
        return {"loss_fn": label_dropout_objective(config, data.num_classes, config.conditional),
                "on_sample": partial(_progress_grid, config=config, data=data)}

    def run_info(self, config: ImageConfig, data: ImageDataset) -> dict:
        return {"num_classes": data.num_classes}

    def after_training(self, run_dir: Path, config: ImageConfig, data: ImageDataset, ema: Precond, *,
                       progress: bool) -> dict:
        with threads_of(config):
            num = min(config.num_eval, len(data.train["x"]))
            drawn = draw(ema, config, data, num=num, seed=0, progress=progress)
            report = _evaluate(config, data, drawn)
        write_samples(first(drawn, 100), run_dir / "samples", run_dir)
        return report





def default_out(config: ImageConfig) -> Path:
    return DOMAIN.default_out(config)


def train(config: ImageConfig = DigitsConfig(), out: str | os.PathLike | None = None, *,
          progress: bool = False) -> Path:
    """Train, save, sample and evaluate (:meth:`Domain.train`); the run folder gets config.json,
    model/ema.safetensors, metrics.jsonl, checkpoints/, progress/step-N.png, samples.png/.npz and
    eval.json."""
    return DOMAIN.train(config, out, progress=progress)


def _progress_grid(step: int, ema: Precond, run_dir: Path | None, *, config: ImageConfig, data: ImageDataset) -> None:
    """The grid written during training: 10 per row (one class per column when conditional)."""
    if run_dir is None:
        return
    drawn = draw(ema, config, data, num=min(100, len(data.test["x"])), seed=0)
    write_samples(drawn, run_dir / "progress" / f"step-{step:07d}", run_dir, npz=False)


# ---------------------------------------------------------------- sampling


def _guided(model: Precond, config: ImageConfig, num_classes: int, guidance: float):
    return guided(model, num_classes, guidance if config.conditional else 1.0)


def draw(model: Precond, config: ImageConfig, data: ImageDataset, *, num: int, seed: int = 0,
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
    x = draw_samples(denoiser, shape, sigmas, sampler=sampler, generator=generator, device=device, cond=cond,
                     progress=progress)
    return {"samples": decode(x.float().cpu()), **out}


# ---------------------------------------------------------------- run folders


def read_config(run_dir: str | os.PathLike) -> ImageConfig:
    return DOMAIN.read_config(run_dir)


def load_run(run_dir: str | os.PathLike, device=None) -> tuple[Precond, ImageConfig]:
    return DOMAIN.load_run(run_dir, device)


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


def sample(run_dir: str | os.PathLike, *, num: int, sampler: str | None = None, steps: int | None = None,
           seed: int = 0, progress: bool = False, label: int | None = None,
           guidance: float | None = None) -> dict[str, torch.Tensor]:
    """``num`` samples from a trained run: ``{"samples": (num, C, H, W) float in [0, 1], "labels": (num,)}``
    (labels for a class-conditional run; superres adds ``low_res`` and ``reference``)."""
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    config = read_config(run_dir)
    data = load_data(config)
    check_label_guidance(config.recipe, config.conditional, data.num_classes, label, guidance)
    if config.task == "superres" and num > len(data.test["x"]):
        raise ValueError(f"superres samples test images; num must be <= {len(data.test['x'])}, got {num}")
    model, _ = load_run(run_dir, device=sampling_device(config))
    with threads_of(config):
        return draw(model, config, data, num=num, seed=seed, label=label, guidance=guidance, sampler=sampler,
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
    check_label_guidance(config.recipe, config.conditional, data.num_classes, label, None)
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
    from ..metrics.images import evaluate_images, load_classifier

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
    in [0, 1], (N, C, H, W); ``labels`` int64; ``prompts`` strings for a prompt run)."""
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
        arrays = {key: value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
                  for key, value in drawn.items()}  # prompts: an array of strings
        paths.append(atomic_write_npz(stem.with_name(stem.name + ".npz"), arrays))
    return paths


DOMAIN = Images(sample=sample, evaluate=evaluate, write_samples=write_samples, inpaint=inpaint_test,
                calibration=calibration_problem)
register(DOMAIN, DESCRIPTIONS)


__all__ = ["CONFIGS", "DOMAIN", "draw", "DigitsConfig", "FashionDiTConfig", "FashionUNetConfig", "ImageConfig", "SuperResConfig",
           "build_model", "evaluate", "inpaint_test", "label_dropout_loss", "load_run", "read_config", "sample",
           "train", "write_samples"]
