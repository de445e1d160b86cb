"""Sampling from an audio run: class-conditional draws, time inpainting of held-out clips, and
writing spectrogram pictures, npz arrays and WAVs."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import torch

from ...adapters.audio import (INPAINT_TASKS, SpectrogramConfig, decode, encode, inpaint_frames, interpolate_frames,
                               save_spectrograms, save_wav, task_mask)
from ...atomic import atomic_write_npz
from ...core.likelihood import denoising_errors
from ...core.precond import Precond
from ...core.samplers import default_sigmas
from ...core.sigmas import karras_sigmas
from ...data.audio import AudioDataset, fitted_clips
from ...train import from_pretrained, load_config
from ...train.generate import draw as draw_samples
from ...train.objective import to_device
from ...train.progress import sampling_progress
from ..base import check_label_guidance
from ..common import config_from_saved, sampling_device, threads_of
from .model import CONFIGS, LEGACY_FIELDS, SPEC_FIELDS, AudioConfig, conditioning, guided_denoiser, load_data


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
    labels = None
    if config.conditional and num_classes > 1:
        labels = torch.arange(num) % num_classes if label is None else torch.full((num,), label)
        out["labels"] = labels
    cond = to_device(conditioning(config, labels, torch.zeros(num, *spec.shape)), device)  # nothing known: generation
    denoiser = guided_denoiser(model, config, num_classes, guidance, cond) if labels is not None else model
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
    from ...train.calibration import CalibrationProblem

    model, config = load_run(run_dir)
    num_classes = len(_run_classes(run_dir))
    labels = torch.arange(num) % num_classes if config.conditional and num_classes > 1 else None
    cond = conditioning(config, labels, torch.zeros(num, *config.spectrogram.shape))
    denoiser = model if labels is None else guided_denoiser(model, config, num_classes, config.guidance, cond)
    return CalibrationProblem(model, denoiser, (num, *config.spectrogram.shape), cond, config.sigma_data)


def config_of(run_dir: str | os.PathLike, saved: dict) -> AudioConfig:
    """The recipe config of a run folder's saved ``config``; a field it lacks takes the value it had
    before the field existed (:data:`LEGACY_FIELDS`: mel spectrograms, no mask channels)."""
    return config_from_saved(run_dir, {**LEGACY_FIELDS, **saved}, CONFIGS, "an audio")


def read_config(run_dir: str | os.PathLike) -> AudioConfig:
    """The recipe config a run folder saved (reads config.json only)."""
    return config_of(run_dir, load_config(run_dir)["config"])


def _run_classes(run_dir) -> list[str]:
    saved = load_config(run_dir)["config"]
    return list(saved.get("class_names") or [str(i) for i in range(saved.get("num_classes", 1))])


def load_run(run_dir: str | os.PathLike, device=None) -> tuple[Precond, AudioConfig]:
    """The EMA model and the config of a run folder."""
    model, saved = from_pretrained(run_dir, device=device)
    return model, config_of(run_dir, saved)


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


# noise levels at which infer_labels compares the classes, and the noise draws at each: the low levels told the
# digits apart least, and more draws beat more levels; each level's error is weighed by 1 / sigma, so that the
# high levels, whose errors are the largest, do not outvote the rest (docs/results/audio.md)
INFER_SIGMAS = (0.35, 0.6, 1.0, 1.6, 2.5, 4.0, 6.0)
INFER_DRAWS = 4


def infer_labels(model: Precond, config: AudioConfig, num_classes: int, known: torch.Tensor, mask: torch.Tensor, *,
                 sigmas=INFER_SIGMAS, draws: int = INFER_DRAWS, level_weights=None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """The class each clip's known frames sound like to the run itself (a diffusion classifier,
    :func:`~multidiff.core.likelihood.denoising_errors`): the label whose denoiser reconstructs the
    noised known frames best, ``known (B, 1, F, T)`` and ``mask (B, 1, 1, T)`` (1 = known). The
    model is not shown the known frames as context here (it could copy them). The errors are averaged
    over ``sigmas`` with ``level_weights`` (default ``1 / sigma``); returns ``(B,)``."""
    if not config.conditional or num_classes < 2:
        raise ValueError("inferring a label needs a class-conditional run")
    nothing = torch.zeros_like(mask)
    conds = [conditioning(config, torch.full((known.shape[0],), k, device=known.device), known, nothing)
             for k in range(num_classes)]
    sigmas = [float(sigma) for sigma in sigmas]
    if level_weights is None:
        level_weights = [1.0 / sigma for sigma in sigmas]
    errors = denoising_errors(model, known, conds, sigmas, weight=mask, draws=draws, generator=generator,
                              level_weights=level_weights)
    return errors.argmin(dim=1)


def inpaint_test(run_dir: str | os.PathLike, *, num: int, region: str | None = None, label: int | None = None,
                 guidance: float | None = None, reconstruction_scale: float = 0.0, sampler: str | None = None,
                 steps: int | None = None, seed: int = 0, progress: bool = False, mask: torch.Tensor | None = None,
                 context: bool = True, start_sigma: float | None = None, infer_label: bool | None = None,
                 true_label: bool = False) -> dict:
    """Time inpainting of ``num`` held-out clips drawn at random (from ``seed``): ``region`` ``continue``
    (default: keep the first half of the frames, generate the rest) or ``gap`` (fill the middle
    third), or any known-frame ``mask (1 or num, 1, 1, frames)``. A mask-aware run reads the known
    frames and the mask (``context=False`` hides them from it: the model as an unconditional one,
    held to the known frames by replacement only, a baseline); every run keeps the known frames
    exactly by replacement, and ``reconstruction_scale > 0`` adds reconstruction guidance. Without
    ``label`` the null class fills (or, with ``infer_label``, the class the known frames sound like
    to the run, :func:`infer_labels`, under guidance; default: the run's ``inpaint_infer_label``, off
    where a label is given); with one, guidance toward it. ``start_sigma`` (default: the
    run's ``inpaint_start_sigma``) > 0 starts the sampler from the straight line across the hidden
    frames (:func:`~multidiff.adapters.audio.interpolate_frames`) noised to that sigma, on a Karras
    grid of ``steps`` from it (SDEdit-style); 0 starts from pure noise. ``true_label`` guides each fill
    toward its clip's own class, an oracle for measuring (what a perfect label inference would
    give). Returns the :func:`draw` dict plus ``masked``, ``reference`` (spectrograms), ``mask`` and
    ``reference_audio``."""
    config = read_config(run_dir)
    region = "continue" if region is None else region
    if region not in INPAINT_TASKS:
        raise ValueError(f"unknown audio inpainting region {region!r}; choose one of: {', '.join(INPAINT_TASKS)}")
    if reconstruction_scale < 0:
        raise ValueError(f"reconstruction_scale must be >= 0, got {reconstruction_scale}")
    start_sigma = config.inpaint_start_sigma if start_sigma is None else float(start_sigma)
    if start_sigma < 0:
        raise ValueError(f"start_sigma must be >= 0 (0: start from pure noise), got {start_sigma}")
    classes = _run_classes(run_dir)
    conditional = config.conditional and len(classes) > 1
    check_label_guidance(config.recipe, conditional, len(classes), label, guidance)
    if true_label and (label is not None or infer_label):
        raise ValueError("true_label guides each fill toward its clip's own class; give no label and do not infer one")
    if infer_label is None:  # the run's setting, where there is a label to infer and none is given
        infer_label = config.inpaint_infer_label and label is None and not true_label and conditional
    if infer_label and label is not None:
        raise ValueError("give a label or infer one from the known frames, not both")
    if (infer_label or true_label) and not conditional:
        raise ValueError(f"{config.recipe} is not class-conditional; there is no label to "
                         f"{'infer' if infer_label else 'guide toward'}")
    if guidance is not None and label is None and not infer_label and not true_label:
        raise ValueError("guidance steers towards a label; give --label too, or infer one from the known frames "
                         "(without one the gap is filled unconditionally)")
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
    if mask is None:
        mask = task_mask(num, spec, region)
    elif mask.ndim != 4 or mask.shape[0] not in (1, num) or tuple(mask.shape[1:]) != (1, 1, spec.frames):
        raise ValueError(f"mask must have shape (1 or {num}, 1, 1, {spec.frames}), got {tuple(mask.shape)}")
    mask = torch.broadcast_to(mask.float(), (num, 1, 1, spec.frames)).clone()
    labels, inferred = None, None
    if conditional:
        labels = torch.full((num,), len(classes) if label is None else label)
        if infer_label:
            with threads_of(config):
                inferred = infer_labels(model, config, len(classes), reference.to(device), mask.to(device),
                                        generator=torch.Generator().manual_seed(seed)).cpu()
            labels = inferred
        elif true_label:
            labels = subset["label"].clone()
    seen = mask if context else torch.zeros_like(mask)
    cond = to_device(conditioning(config, labels, reference, seen), device)
    denoiser = model
    if label is not None or inferred is not None or true_label:
        denoiser = guided_denoiser(model, config, len(classes), config.guidance if guidance is None else guidance,
                                   cond)
    sampler = config.sampler if sampler is None else sampler
    steps = config.sample_steps if steps is None else steps
    sigmas = default_sigmas(model.schedule, steps, sampler, sigma_data=config.sigma_data)
    warm = None
    if start_sigma > 0:
        if start_sigma >= float(sigmas[0]):
            raise ValueError(f"start_sigma ({start_sigma}) must be below the run's largest sigma "
                             f"({float(sigmas[0]):.3g}); 0 starts from pure noise")
        sigmas = karras_sigmas(steps, float(sigmas[-2]), start_sigma)
        warm = interpolate_frames(reference, mask).to(device)
    start = time.perf_counter()
    with threads_of(config), sampling_progress(len(sigmas) - 1, f"inpaint ({sampler})", progress) as callback:
        with torch.set_grad_enabled(reconstruction_scale > 0):
            filled = inpaint_frames(denoiser, reference.to(device), mask.to(device), sigmas, method=sampler,
                                    cond=cond, generator=generator, reconstruction_scale=reconstruction_scale,
                                    callback=callback, start=warm)
    network = time.perf_counter() - start
    filled = filled.detach().float().cpu().clamp(-1, 1)
    start = time.perf_counter()
    with threads_of(config):
        waves = decode(filled, spec, seed=seed)
    return {"samples": waves, "spectrograms": filled, "labels": subset["label"], "sample_rate": spec.sample_rate,
            "masked": torch.where(torch.broadcast_to(mask, reference.shape) > 0, reference, -1.0),
            "reference": reference, "mask": mask, "reference_audio": reference_audio, "network_seconds": network,
            "decode_seconds": time.perf_counter() - start, "class_names": classes,
            **({} if inferred is None else {"inferred_labels": inferred})}


# ---------------------------------------------------------------- writing samples


def titles(drawn: dict, class_names: list[str] | None) -> list[str] | None:
    """The class name of each drawn clip (None for an unconditional draw)."""
    if "labels" not in drawn or not class_names:
        return None
    return [class_names[int(k)] if int(k) < len(class_names) else str(int(k)) for k in drawn["labels"]]


def _file_word(title: str) -> str:
    """A class name or prompt as part of a file name: runs of other characters become "_", at most 48."""
    return re.sub(r"[^A-Za-z0-9#+-]+", "_", title).strip("_")[:48] or "_"


def run_spectrogram(run_dir: str | os.PathLike) -> SpectrogramConfig:
    """The spectrogram an audio run was trained on, from its config.json (any audio recipe's)."""
    saved = {**LEGACY_FIELDS, **load_config(run_dir)["config"]}
    return SpectrogramConfig(**{name: saved[name] for name in SPEC_FIELDS if name in saved})


def write_samples(drawn: dict, stem: str | os.PathLike, run_dir: str | os.PathLike | None = None, *,
                  npz: bool = True) -> list[Path]:
    """``stem.png`` (spectrograms; for inpainting, rows of input / filled / original), ``stem.npz``
    (``samples`` float32 (N, T) in [-1, 1], ``sample_rate``, ``labels``, ``spectrograms`` and, for
    inpainting, ``masked``, ``reference``, ``mask``, ``reference_audio``) and ``stem/`` with one WAV
    per sample (``0000-<class>.wav``); a prompt run's ``prompts`` are saved as strings and title the
    pictures and WAVs."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    class_names = drawn.get("class_names") or (_run_classes(run_dir) if run_dir is not None else None)
    names = list(drawn["prompts"]) if "prompts" in drawn else titles(drawn, class_names)
    spectrograms = drawn["spectrograms"]
    spec = run_spectrogram(run_dir) if run_dir is not None else None
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
        if "prompts" in drawn:
            arrays["prompts"] = np.asarray(drawn["prompts"])
        paths.append(atomic_write_npz(stem.with_name(stem.name + ".npz"), arrays))
        folder = stem.with_name(stem.name)
        folder.mkdir(parents=True, exist_ok=True)
        for i, wave in enumerate(drawn["samples"]):
            name = f"{i:04d}" + (f"-{_file_word(names[i])}" if names else "") + ".wav"
            save_wav(wave, folder / name, drawn["sample_rate"])
        paths.append(folder)
    return paths
