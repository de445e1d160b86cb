"""Audio recipes: class-conditional spectrogram diffusion with classifier-free
guidance, decoded to sound by Griffin-Lim.

=====================  ======================================================
``spoken_digits``      the CPU default: "zero" ... "nine" by espeak-ng and
                       flite voices, 8 kHz, 32 mels x 48 frames (0.76 s); a
                       temporal U-Net over mel frames (mel bins as channels);
                       trains and evaluates in ~11 minutes on 2 cores
``notes``              single notes by fluidsynth, 16 kHz, 64 mels x 32
                       frames (0.5 s), conditioned on (pitch, instrument):
                       label = ``pitch_index * 6 + instrument``
``spoken_digits_gpu``  one GPU: 16 kHz, 64 mels x 64 frames (1 s), more
                       clips, a 2-D U-Net
``notes_gpu``          one GPU: 16 kHz, 128 mels x 64 frames (1 s), a 2-D U-Net
=====================  ======================================================

All share :class:`AudioConfig`, whose spectrogram fields are saved with the run,
so sampling always decodes with what the run was trained on. Evaluation
(``eval.json``, ``multidiff eval``) decodes samples to waveforms and judges
them as audio with the bundled log-mel classifier of the dataset
(:mod:`multidiff.metrics.audio`): its accuracy on class-conditional samples and
the Frechet distance of its features against the held-out clips, beside the
real-vs-real floor; for notes also the share of samples whose f0 is within 50
cents of the requested pitch. It also reports the sampling cost in seconds of
compute per second of audio, network and Griffin-Lim separately.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..adapters.audio import (INPAINT_TASKS, SpectrogramConfig, decode, encode, inpaint_frames, save_spectrograms,
                              save_wav, task_mask)
from ..atomic import atomic_write_npz
from ..backbones import UNet1D, UNet1DConfig, UNet2D, UNet2DConfig
from ..core.precond import Precond
from ..core.samplers import default_sigmas
from ..data.audio import AUDIO_DATASETS, AudioDataset, fitted_clips, label_pitch, load_audio_dataset
from ..train import load_config
from ..train.generate import draw as draw_samples
from ..train.progress import sampling_progress
from .base import ClassConditionalConfig, Domain, check_label_guidance, first
from .common import (check_fields, guided, label_dropout_objective, make_schedule, noise_embedding, sampling_device,
                    seeded_model, threads_of)
from .registry import register

BACKBONES = ("unet1d", "unet2d")
SPEC_FIELDS = tuple(f.name for f in fields(SpectrogramConfig))


@dataclass(frozen=True)
class AudioConfig(ClassConditionalConfig):
    recipe: ClassVar[str] = "spoken_digits"
    # data
    dataset: str = "spoken_digits"  # one of multidiff.data.audio.AUDIO_DATASETS
    data_root: str = ""  # folder: your audio files (one subfolder per class, or none)
    clips_per_class: int = 300  # spoken_digits: training clips of each digit (the test split has 50 each)
    guidance: float = 2.0  # classifier-free guidance scale at sampling (1: the plain conditional model)
    # spectrogram (see multidiff.adapters.audio.SpectrogramConfig)
    sample_rate: int = 8000
    n_fft: int = 512
    hop_length: int = 128
    n_mels: int = 32
    f_min: float = 0.0
    f_max: float = 0.0
    frames: int = 48
    db_floor: float = -60.0
    db_ceiling: float = 40.0
    griffin_lim_iters: int = 32
    trim_db: float = 40.0
    peak: float = 0.9
    # model
    backbone: str = "unet1d"  # "unet1d" (mel bins as channels, convolutions over time) or "unet2d"

    def __post_init__(self):
        super().__post_init__()
        check_fields(self, {"dataset": AUDIO_DATASETS, "backbone": BACKBONES}, at_least_one=("clips_per_class",))
        presets = ("tiny", "small", "medium", "base") if self.backbone == "unet1d" else ("tiny", "small", "base")
        if self.preset not in presets:
            raise ValueError(f"unknown {self.backbone} preset {self.preset!r}; choose one of: {', '.join(presets)}")
        if self.dataset == "folder" and not self.data_root:
            raise ValueError("the folder dataset needs data_root=DIR (a folder of WAV files, one subfolder per "
                             "class or none)")
        self.spectrogram  # checks the spectrogram settings

    @property
    def spectrogram(self) -> SpectrogramConfig:
        return SpectrogramConfig(**{name: getattr(self, name) for name in SPEC_FIELDS})


@dataclass(frozen=True)
class SpokenDigitsConfig(AudioConfig):
    recipe: ClassVar[str] = "spoken_digits"


@dataclass(frozen=True)
class NotesConfig(AudioConfig):
    recipe: ClassVar[str] = "notes"
    dataset: str = "notes"
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 64
    frames: int = 32
    preset: str = "medium"
    num_eval: int = 300


@dataclass(frozen=True)
class SpokenDigitsGPUConfig(AudioConfig):
    recipe: ClassVar[str] = "spoken_digits_gpu"
    clips_per_class: int = 1000
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 64
    frames: int = 64
    griffin_lim_iters: int = 64
    backbone: str = "unet2d"
    preset: str = "base"
    steps: int = 40_000
    batch_size: int = 128
    lr: float = 2e-4
    warmup_steps: int = 1000
    ema_decay: float = 0.9999
    checkpoint_every: int = 5000
    sample_every: int = 5000


@dataclass(frozen=True)
class NotesGPUConfig(SpokenDigitsGPUConfig):
    recipe: ClassVar[str] = "notes_gpu"
    dataset: str = "notes"
    n_mels: int = 128
    num_eval: int = 300


CONFIGS: dict[str, type[AudioConfig]] = {cls.recipe: cls for cls in
                                         (SpokenDigitsConfig, NotesConfig, SpokenDigitsGPUConfig, NotesGPUConfig)}
CLASSIFIER_DATASETS = ("spoken_digits", "notes")
DESCRIPTIONS = {
    "spoken_digits": "class-conditional spectrogram diffusion of spoken digits (espeak-ng/flite voices), "
                     "temporal U-Net, Griffin-Lim to WAV, CPU, ~11 min",
    "notes": "pitch- and instrument-conditional notes rendered by fluidsynth, temporal U-Net, CPU",
    "spoken_digits_gpu": "spoken digits at 16 kHz, 64 mels x 1 s, 2-D U-Net (~36M), sized for one GPU",
    "notes_gpu": "notes at 16 kHz, 128 mels x 1 s, 2-D U-Net (~36M), sized for one GPU",
}


# ---------------------------------------------------------------- data and model


def load_data(config: AudioConfig) -> AudioDataset:
    if config.dataset == "spoken_digits":
        return load_audio_dataset("spoken_digits", per_digit=config.clips_per_class)
    if config.dataset == "folder":
        return load_audio_dataset("folder", root=config.data_root)
    return load_audio_dataset(config.dataset)


def build_model(config: AudioConfig, num_classes: int) -> Precond:
    """The untrained denoiser; its weights depend on ``config.seed`` only."""
    schedule = make_schedule(config.schedule, config.sigma_data)
    spec = config.spectrogram
    classes = num_classes if config.conditional else 0
    if config.backbone == "unet1d":
        options = dict(in_channels=spec.n_mels, length=spec.frames, num_classes=classes,
                       embedding=noise_embedding(schedule))
        if config.width:
            options["base_channels"] = config.width
        backbone_config, backbone_cls = UNet1DConfig.preset(config.preset, **options), UNet1D
    else:
        options = dict(image_size=(spec.n_mels, spec.frames), in_channels=1, num_classes=classes,
                       embedding=noise_embedding(schedule))
        if config.width:
            options["base_channels"] = config.width
        backbone_config, backbone_cls = UNet2DConfig.preset(config.preset, **options), UNet2D
    return seeded_model(lambda: backbone_cls(backbone_config), config.seed, config.prediction, schedule,
                        config.sigma_data)


# ---------------------------------------------------------------- the domain


class Audio(Domain):
    name = "an audio"
    configs = CONFIGS
    examples = "clips"

    def load_data(self, config: AudioConfig, *, progress: bool = False) -> AudioDataset:
        data = load_data(config)
        if config.conditional and data.num_classes < 2:
            raise ValueError(f"{config.dataset!r} has one class, so it cannot be class-conditional; set "
                             f"conditional=false guidance=1")
        return data

    def build_model(self, config: AudioConfig, data: AudioDataset) -> Precond:
        return build_model(config, data.num_classes)

    def training_set(self, config: AudioConfig, data: AudioDataset) -> dict:
        x = encode(fitted_clips(data.train, data.sample_rate, config.spectrogram), config.spectrogram)  # (N, 1, F, T)
        return {"x": x, "cond": data.train["label"]} if config.conditional else {"x": x}

    def trainer_options(self, config: AudioConfig, data: AudioDataset) -> dict:
        return {"loss_fn": label_dropout_objective(config, data.num_classes, config.conditional),
                "on_sample": partial(_progress_grid, config=config, data=data)}

    def run_info(self, config: AudioConfig, data: AudioDataset) -> dict:
        return {"num_classes": data.num_classes, "class_names": list(data.class_names)}

    def after_training(self, run_dir: Path, config: AudioConfig, data: AudioDataset, ema: Precond, *,
                       progress: bool) -> dict:
        with threads_of(config):
            num = min(config.num_eval, len(data.train["audio"]))  # as evaluate(): the floor needs as many clips
            drawn = draw(ema, config, data.num_classes, num=num, seed=0, progress=progress)
            report = _evaluate(config, data, drawn)
        write_samples(first(drawn, 40), run_dir / "samples", run_dir)
        return report





def default_out(config: AudioConfig) -> Path:
    return DOMAIN.default_out(config)


def train(config: AudioConfig = SpokenDigitsConfig(), out: str | os.PathLike | None = None, *,
          progress: bool = False) -> Path:
    """Train, save, sample and evaluate (:meth:`Domain.train`); the run folder gets config.json,
    model/ema.safetensors, metrics.jsonl, checkpoints/, progress/step-N.png, samples.png/.npz,
    samples/ (WAVs) and eval.json."""
    return DOMAIN.train(config, out, progress=progress)


def _progress_grid(step: int, ema: Precond, run_dir: Path | None, *, config: AudioConfig, data: AudioDataset) -> None:
    """Spectrograms drawn during training (no Griffin-Lim, to stay cheap)."""
    if run_dir is None:
        return
    drawn = draw(ema, config, data.num_classes, num=20, seed=0, waveforms=False)
    save_spectrograms(drawn["spectrograms"], run_dir / "progress" / f"step-{step:07d}.png",
                      titles=titles(drawn, list(data.class_names)))


# ---------------------------------------------------------------- sampling


def draw(model: Precond, config: AudioConfig, num_classes: int, *, num: int, seed: int = 0,
         label: int | None = None, guidance: float | None = None, sampler: str | None = None,
         steps: int | None = None, progress: bool = False, waveforms: bool = True) -> dict:
    """``{"samples": (num, clip_samples) waveforms in [-1, 1], "spectrograms": (num, 1, F, T) model
    space, "labels": (num,), "sample_rate", "network_seconds", "decode_seconds"}``; labels cycle through
    the classes (or are all ``label``)."""
    sampler = config.sampler if sampler is None else sampler
    steps = config.sample_steps if steps is None else steps
    guidance = config.guidance if guidance is None else guidance
    spec = config.spectrogram
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    sigmas = default_sigmas(model.schedule, steps, sampler, sigma_data=config.sigma_data)
    out: dict = {"sample_rate": spec.sample_rate}
    cond, denoiser = None, model
    if config.conditional and num_classes > 1:
        labels = torch.arange(num) % num_classes if label is None else torch.full((num,), label)
        cond, out["labels"] = labels.to(device), labels
        denoiser = guided(model, num_classes, guidance)
    start = time.perf_counter()
    x = draw_samples(denoiser, (num, *spec.shape), sigmas, sampler=sampler, generator=generator, device=device,
                     cond=cond, progress=progress)
    out["network_seconds"] = time.perf_counter() - start
    out["spectrograms"] = x.float().cpu().clamp(-1, 1)
    if waveforms:
        start = time.perf_counter()
        out["samples"] = decode(out["spectrograms"], spec, seed=seed)
        out["decode_seconds"] = time.perf_counter() - start
    return out


def calibration_problem(run_dir: str | os.PathLike, num: int):
    """What ``multidiff calibrate`` calibrates: the model as ``sample`` draws by default (labels
    cycling through the classes, the run's guidance) on batches of ``num`` spectrograms."""
    from ..train.calibration import CalibrationProblem

    model, config = load_run(run_dir)
    num_classes = len(_run_classes(run_dir))
    cond, denoiser = None, model
    if config.conditional and num_classes > 1:
        cond, denoiser = torch.arange(num) % num_classes, guided(model, num_classes, config.guidance)
    return CalibrationProblem(model, denoiser, (num, *config.spectrogram.shape), cond, config.sigma_data)


def read_config(run_dir: str | os.PathLike) -> AudioConfig:
    return DOMAIN.read_config(run_dir)


def _run_classes(run_dir) -> list[str]:
    saved = load_config(run_dir)["config"]
    return list(saved.get("class_names") or [str(i) for i in range(saved.get("num_classes", 1))])


def load_run(run_dir: str | os.PathLike, device=None) -> tuple[Precond, AudioConfig]:
    return DOMAIN.load_run(run_dir, device)


def sample(run_dir: str | os.PathLike, *, num: int, sampler: str | None = None, steps: int | None = None,
           seed: int = 0, progress: bool = False, label: int | None = None, guidance: float | None = None) -> dict:
    """``num`` clips from a trained run (see :func:`draw` for the dict)."""
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    config = read_config(run_dir)
    classes = _run_classes(run_dir)
    check_label_guidance(config.recipe, config.conditional and len(classes) > 1, len(classes), label, guidance)
    model, _ = load_run(run_dir, device=sampling_device(config))
    with threads_of(config):
        drawn = draw(model, config, len(classes), num=num, seed=seed, label=label, guidance=guidance,
                     sampler=sampler, steps=steps, progress=progress)
    drawn["class_names"] = classes
    return drawn


def inpaint_test(run_dir: str | os.PathLike, *, num: int, region: str | None = None, label: int | None = None,
                 guidance: float | None = None, reconstruction_scale: float = 0.0, sampler: str | None = None,
                 steps: int | None = None, seed: int = 0, progress: bool = False) -> dict:
    """Time inpainting of ``num`` held-out clips drawn at random (from ``seed``): ``region`` ``continue``
    (default: keep the first half of the frames, generate the rest) or ``gap`` (fill the middle
    third). Without ``label`` the null class fills; with one, guidance toward it. Returns the
    :func:`draw` dict plus ``masked``, ``reference`` (spectrograms), ``mask`` and ``reference_audio``."""
    config = read_config(run_dir)
    region = "continue" if region is None else region
    if region not in INPAINT_TASKS:
        raise ValueError(f"unknown audio inpainting region {region!r}; choose one of: {', '.join(INPAINT_TASKS)}")
    if reconstruction_scale < 0:
        raise ValueError(f"reconstruction_scale must be >= 0, got {reconstruction_scale}")
    classes = _run_classes(run_dir)
    check_label_guidance(config.recipe, config.conditional and len(classes) > 1, len(classes), label, guidance)
    if guidance is not None and label is None:
        raise ValueError("guidance steers towards a label; give --label too (without one the gap is filled "
                         "unconditionally)")
    data = load_data(config)
    count = len(data.test["audio"])
    if not 1 <= num <= count:
        raise ValueError(f"inpainting fills held-out clips; num must be in [1, {count}], got {num}")
    spec = config.spectrogram
    model, _ = load_run(run_dir, device=sampling_device(config))
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randperm(count, generator=generator)[:num]
    subset = {"audio": [data.test["audio"][i] for i in pick], "label": data.test["label"][pick]}
    reference_audio = fitted_clips(subset, data.sample_rate, spec)
    reference = encode(reference_audio, spec)  # (num, 1, F, T)
    mask = task_mask(num, spec, region)
    conditional = config.conditional and len(classes) > 1
    denoiser, cond = model, None
    if conditional:
        cond = torch.full((num,), len(classes) if label is None else label)
        if label is not None:
            denoiser = guided(model, len(classes), config.guidance if guidance is None else guidance)
    sampler = config.sampler if sampler is None else sampler
    sigmas = default_sigmas(model.schedule, config.sample_steps if steps is None else steps, sampler,
                            sigma_data=config.sigma_data)
    start = time.perf_counter()
    with threads_of(config), sampling_progress(len(sigmas) - 1, f"inpaint ({sampler})", progress) as callback:
        with torch.set_grad_enabled(reconstruction_scale > 0):
            filled = inpaint_frames(denoiser, reference.to(device), mask.to(device), sigmas, method=sampler,
                                    cond=None if cond is None else cond.to(device), generator=generator,
                                    reconstruction_scale=reconstruction_scale, callback=callback)
    network = time.perf_counter() - start
    filled = filled.detach().float().cpu().clamp(-1, 1)
    start = time.perf_counter()
    with threads_of(config):
        waves = decode(filled, spec, seed=seed)
    return {"samples": waves, "spectrograms": filled, "labels": subset["label"], "sample_rate": spec.sample_rate,
            "masked": torch.where(torch.broadcast_to(mask, reference.shape) > 0, reference, -1.0),
            "reference": reference, "mask": mask, "reference_audio": reference_audio, "network_seconds": network,
            "decode_seconds": time.perf_counter() - start, "class_names": classes}


# ---------------------------------------------------------------- evaluation


def evaluate(run_dir: str | os.PathLike, *, num: int | None = None, sampler: str | None = None,
             steps: int | None = None, seed: int = 0, progress: bool = False, guidance: float | None = None) -> dict:
    """The metrics of fresh samples (see the module docstring), as a JSON-able dict."""
    config = read_config(run_dir)
    data = load_data(config)
    limit = len(data.train["audio"])
    num = min(config.num_eval, limit) if num is None else num
    if not 2 <= num <= limit:
        raise ValueError(f"num must be in [2, {limit}] for {config.recipe} (the floor compares as many real "
                         f"clips), got {num}")
    drawn = sample(run_dir, num=num, sampler=sampler, steps=steps, seed=seed, progress=progress, guidance=guidance)
    with threads_of(config):
        return _evaluate(config, data, drawn, sampler=sampler, steps=steps, guidance=guidance, seed=seed)


def _evaluate(config: AudioConfig, data: AudioDataset, drawn: dict, *, sampler=None, steps=None, guidance=None,
              seed: int = 0) -> dict:
    from ..metrics.audio import evaluate_audio, load_audio_classifier, pitch_accuracy, vocoder_floor

    spec = config.spectrogram
    n = len(drawn["samples"])
    audio_seconds = n * spec.clip_seconds
    report = {"recipe": config.recipe, "dataset": config.dataset, "num": n,
              "sampler": config.sampler if sampler is None else sampler,
              "sample_steps": config.sample_steps if steps is None else steps, "seed": seed,
              "network_seconds_per_audio_second": drawn["network_seconds"] / audio_seconds,
              "griffin_lim_seconds_per_audio_second": drawn["decode_seconds"] / audio_seconds,
              "threads": torch.get_num_threads()}
    if "labels" in drawn:
        report["guidance"] = config.guidance if guidance is None else guidance
    if config.dataset == "notes" and "labels" in drawn:
        pitches = torch.tensor([label_pitch(int(k)) for k in drawn["labels"]])
        report.update(pitch_accuracy(drawn["samples"], spec.sample_rate, pitches))
    if config.dataset not in CLASSIFIER_DATASETS:
        report["note"] = (f"no bundled classifier for {config.dataset!r}, so no Frechet distance or accuracy; they "
                          f"exist for {', '.join(CLASSIFIER_DATASETS)}")
        return report
    classifier, classifier_spec = load_audio_classifier(config.dataset, train_if_missing=True)
    real_test = fitted_clips(data.test, data.sample_rate, classifier_spec)
    real_train = fitted_clips(data.train, data.sample_rate, classifier_spec)
    metrics = evaluate_audio(drawn["samples"], spec.sample_rate, drawn.get("labels"), real_test, real_train,
                             classifier_spec.sample_rate, classifier, classifier_spec, seed=seed)
    report.update({key: metrics[key] for key in ("frechet", "frechet_floor", "frechet_floor_std",
                                                 "classifier_accuracy", "classifier_test_accuracy")})
    report["frechet_over_floor"] = metrics["frechet"] / metrics["frechet_floor"]
    pick = torch.randperm(len(data.train["audio"]), generator=torch.Generator().manual_seed(seed))[:n]
    clips = fitted_clips({"audio": [data.train["audio"][i] for i in pick]}, data.sample_rate, spec)
    labels = data.train["label"][pick] if config.conditional and data.num_classes > 1 else None
    report.update(vocoder_floor(clips, labels, spec, real_test, classifier, classifier_spec, seed=seed))
    return report


# ---------------------------------------------------------------- writing samples


def titles(drawn: dict, class_names: list[str] | None) -> list[str] | None:
    """The class name of each drawn clip (None for an unconditional draw)."""
    if "labels" not in drawn or not class_names:
        return None
    return [class_names[int(k)] if int(k) < len(class_names) else str(int(k)) for k in drawn["labels"]]


def write_samples(drawn: dict, stem: str | os.PathLike, run_dir: str | os.PathLike | None = None, *,
                  npz: bool = True) -> list[Path]:
    """``stem.png`` (spectrograms; for inpainting, rows of input / filled / original), ``stem.npz``
    (``samples`` float32 (N, T) in [-1, 1], ``sample_rate``, ``labels``, ``spectrograms`` and, for
    inpainting, ``masked``, ``reference``, ``mask``, ``reference_audio``) and ``stem/`` with one WAV
    per sample (``0000-<class>.wav``)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    class_names = drawn.get("class_names") or (_run_classes(run_dir) if run_dir is not None else None)
    names = titles(drawn, class_names)
    spectrograms = drawn["spectrograms"]
    spec = read_config(run_dir).spectrogram if run_dir is not None else None
    if "masked" in drawn:
        rows, row_titles = [], []
        for start in range(0, len(spectrograms), 10):
            part = slice(start, start + 10)
            rows.append(torch.cat([drawn["masked"][part], spectrograms[part], drawn["reference"][part]]))
            count = len(spectrograms[part])
            part_names = (names or [""] * len(spectrograms))[part]
            row_titles += [f"input {t}" for t in part_names] + [f"filled {t}" for t in part_names]
            row_titles += ["original"] * count
        picture = save_spectrograms(torch.cat(rows), stem.with_name(stem.name + ".png"),
                                    ncol=min(10, len(spectrograms)), titles=row_titles, spec=spec)
    else:
        picture = save_spectrograms(spectrograms, stem.with_name(stem.name + ".png"), titles=names, spec=spec)
    paths = [picture]
    if npz:
        arrays = {key: value.numpy().astype(np.float32) if torch.is_floating_point(value) else value.numpy()
                  for key, value in drawn.items() if isinstance(value, torch.Tensor)}
        arrays["sample_rate"] = np.array(drawn["sample_rate"], dtype=np.int64)
        paths.append(atomic_write_npz(stem.with_name(stem.name + ".npz"), arrays))
        folder = stem.with_name(stem.name)
        folder.mkdir(parents=True, exist_ok=True)
        for i, wave in enumerate(drawn["samples"]):
            name = f"{i:04d}" + (f"-{names[i].replace(' ', '_').replace('/', '_')}" if names else "") + ".wav"
            save_wav(wave, folder / name, drawn["sample_rate"])
        paths.append(folder)
    return paths


DOMAIN = Audio(sample=sample, evaluate=evaluate, write_samples=write_samples, inpaint=inpaint_test,
               calibration=calibration_problem)
register(DOMAIN, DESCRIPTIONS)


__all__ = ["AudioConfig", "CONFIGS", "DOMAIN", "NotesConfig", "NotesGPUConfig", "SpokenDigitsConfig",
           "SpokenDigitsGPUConfig", "build_model", "draw", "evaluate", "inpaint_test", "load_run", "read_config",
           "sample", "titles", "train", "write_samples"]
