"""The audio recipes' configs, data and denoiser, and the mask-aware training objective."""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import partial
from typing import ClassVar

import torch

from ...adapters.audio import CONTEXT_FILLS, SpectrogramConfig, context_signal, random_masks
from ...backbones import UNet1D, UNet1DConfig, UNet2D, UNet2DConfig
from ...core.guidance import ClassifierFreeGuidance
from ...core.losses import denoising_loss
from ...core.precond import Precond
from ...data.audio import AUDIO_DATASETS, AudioDataset, load_audio_dataset
from ..base import ClassConditionalConfig
from ..common import (check_fields, label_dropout_objective, loss_weighting, make_schedule,
                      noise_embedding, seeded_model)

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
    # spectrogram (see multidiff.adapters.audio.SpectrogramConfig); spoken_digits has the 16 kHz one
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
    scale: str = "mel"  # "mel" bands or "linear" STFT bins (inverts best; 257+ channels did not train on 2 cores)
    mel_inverse: str = "nnls"  # mel -> STFT power: "nnls" (non-negative least squares) or "lstsq" (older runs)
    # model
    backbone: str = "unet1d"  # "unet1d" (frequency bins as channels, convolutions over time) or "unet2d"
    io_kernel: int = 0  # unet1d: kernel of its input and output convolutions (0: its own; 1: per-frame projections)
    # unet1d: channels of its first (full-length) level, which its output reads (0: the preset's); below the bin
    # count the output cannot reach every bin, and the noise the denoiser's skip passes there stays as grain
    top_width: int = 0
    # mask-aware: the denoiser also reads the known frames and their mask (cond["image"]); a share
    # mask_rate of training examples gets a random gap (gap_seconds) or continuation to fill
    mask_aware: bool = False
    mask_rate: float = 0.5
    # what the context holds in the hidden frames: "zero", or "line" (the straight line across them, a first
    # guess to refine; see multidiff.adapters.audio.context_signal)
    context_fill: str = "zero"
    # a masked training example's label is dropped with this probability (label_dropout for the rest):
    # a fill is drawn without a label, from the frames around it, so that path needs the training
    context_label_dropout: float = 0.1
    # weight of a masked example's known frames in its loss (1: every frame alike; 0: only the frames to fill,
    # as masked modelling trains; the known ones are in the context, so the net can copy them)
    known_loss_weight: float = 1.0
    # inpainting starts from the straight line across the hidden frames noised to this sigma (SDEdit-style),
    # not from pure noise; 0: from pure noise
    inpaint_start_sigma: float = 0.0
    # a fill given no label is drawn toward the class its known frames sound like to the run (infer_labels: a
    # diffusion classifier), under guidance; off: the null class
    inpaint_infer_label: bool = False
    gap_min_seconds: float = 0.05
    gap_max_seconds: float = 0.3

    def __post_init__(self):
        super().__post_init__()
        check_fields(self, {"dataset": AUDIO_DATASETS, "backbone": BACKBONES, "context_fill": CONTEXT_FILLS},
                     at_least_one=("clips_per_class",),
                     non_negative=("io_kernel", "top_width"))
        presets = ("tiny", "small", "medium", "base") if self.backbone == "unet1d" else ("tiny", "small", "base")
        if self.preset not in presets:
            raise ValueError(f"unknown {self.backbone} preset {self.preset!r}; choose one of: {', '.join(presets)}")
        if self.dataset == "folder" and not self.data_root:
            raise ValueError("the folder dataset needs data_root=DIR (a folder of WAV files, one subfolder per "
                             "class or none)")
        for name in ("mask_rate", "context_label_dropout", "known_loss_weight"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.top_width and self.backbone != "unet1d":
            raise ValueError(f"top_width is a setting of the unet1d backbone, not of {self.backbone}")
        if self.inpaint_start_sigma < 0:
            raise ValueError(f"inpaint_start_sigma must be >= 0 (0: start from pure noise), got "
                             f"{self.inpaint_start_sigma}")
        if not 0 < self.gap_min_seconds <= self.gap_max_seconds:
            raise ValueError(f"need 0 < gap_min_seconds <= gap_max_seconds, got {self.gap_min_seconds}, "
                             f"{self.gap_max_seconds}")
        self.spectrogram  # checks the spectrogram settings

    @property
    def spectrogram(self) -> SpectrogramConfig:
        return SpectrogramConfig(**{name: getattr(self, name) for name in SPEC_FIELDS})


@dataclass(frozen=True)
class SpokenDigitsConfig(AudioConfig):
    """The CPU default: 16 kHz, 96 mels of a 512-point STFT (Griffin-Lim round trip at spectral
    convergence 0.12), a mask-aware U-Net with per-frame projections in and out and a first level as
    wide as the bins (so its output reaches every bin), sampled by Euler ancestral in 12 steps: the
    deterministic samplers leave a grain on this network's spectrograms that the fresh noise of an
    ancestral step washes out. Its context holds the straight line across the hidden frames, and a
    fill starts from pure noise toward the digit the known frames sound like to the run
    (docs/results/audio.md)."""

    recipe: ClassVar[str] = "spoken_digits"
    sample_rate: int = 16000
    hop_length: int = 256
    n_mels: int = 96
    mask_aware: bool = True
    context_label_dropout: float = 0.5
    context_fill: str = "line"
    inpaint_infer_label: bool = True
    io_kernel: int = 1
    top_width: int = 96
    sampler: str = "euler_ancestral"
    sample_steps: int = 12


@dataclass(frozen=True)
class SpokenDigits16kConfig(SpokenDigitsConfig):
    """The same as ``spoken_digits`` since it moved to 16 kHz (#28); kept for the scripts and runs that name it."""

    recipe: ClassVar[str] = "spoken_digits_16k"


@dataclass(frozen=True)
class SpokenDigits8kConfig(AudioConfig):
    """The CPU default before #28: 8 kHz, 32 mels x 48 frames, not mask-aware, unipc in 24 steps;
    ~11 minutes on 2 cores, telephone bandwidth (Griffin-Lim round trip at spectral convergence 0.58)."""

    recipe: ClassVar[str] = "spoken_digits_8k"


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
    mask_aware: bool = False  # notes are judged on generation alone: every training clip goes to it


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
                                         (SpokenDigitsConfig, SpokenDigits16kConfig, SpokenDigits8kConfig, NotesConfig,
                                          SpokenDigitsGPUConfig, NotesGPUConfig)}
# what a run folder saved before a field existed means (older runs: mel spectrograms inverted by plain least
# squares, no mask channels, inpainting from pure noise, the preset's first level, 0 in the context's hidden
# frames, fills given no label drawn with the null class)
LEGACY_FIELDS = {"scale": "mel", "mel_inverse": "lstsq", "mask_aware": False, "io_kernel": 0,
                 "inpaint_start_sigma": 0.0, "top_width": 0,
                 "context_fill": "zero", "inpaint_infer_label": False}
CLASSIFIER_DATASETS = ("spoken_digits", "notes")
DESCRIPTIONS = {
    "spoken_digits": "class-conditional spectrogram diffusion of spoken digits (espeak-ng/flite voices), 16 kHz, "
                     "96 mels, mask-aware temporal U-Net that also inpaints, Griffin-Lim to WAV, CPU, ~15 min",
    "spoken_digits_16k": "the same as spoken_digits (16 kHz since #28), kept for the scripts that name it",
    "spoken_digits_8k": "spoken digits at 8 kHz, 32 mels, temporal U-Net (the CPU default before #28), ~11 min",
    "notes": "pitch- and instrument-conditional notes rendered by fluidsynth, temporal U-Net, CPU",
    "spoken_digits_gpu": "spoken digits at 16 kHz, 64 mels x 1 s, 2-D U-Net (~36M), sized for one GPU",
    "notes_gpu": "notes at 16 kHz, 128 mels x 1 s, 2-D U-Net (~36M), sized for one GPU",
}


def load_data(config: AudioConfig) -> AudioDataset:
    if config.dataset == "spoken_digits":
        return load_audio_dataset("spoken_digits", per_digit=config.clips_per_class)
    if config.dataset == "folder":
        return load_audio_dataset("folder", root=config.data_root)
    return load_audio_dataset(config.dataset)


def unet1d_widths(config: AudioConfig) -> dict:
    """The config's ``width`` and ``top_width`` as :class:`UNet1DConfig` overrides (unset ones left out)."""
    options = {}
    if config.width:
        options["base_channels"] = config.width
    if config.top_width:
        options["top_channels"] = config.top_width
    return options


def build_model(config: AudioConfig, num_classes: int) -> Precond:
    """The untrained denoiser; its weights depend on ``config.seed`` only. A mask-aware one reads
    :func:`~multidiff.adapters.audio.context_signal` as ``cond["image"]``."""
    schedule = make_schedule(config.schedule, config.sigma_data)
    spec = config.spectrogram
    classes = num_classes if config.conditional else 0
    if config.backbone == "unet1d":
        # io_kernel 1: per-frame projections in and out; with many bins (and twice that of context) a
        # kernel-5 input convolution costs more than the rest of the U-Net
        options = dict(in_channels=spec.bins, length=spec.frames, num_classes=classes,
                       io_kernel_size=config.io_kernel, embedding=noise_embedding(schedule))
        if config.mask_aware:
            options["cond_channels"] = 2 * spec.bins
        options.update(unet1d_widths(config))
        backbone_config, backbone_cls = UNet1DConfig.preset(config.preset, **options), UNet1D
    else:
        options = dict(image_size=(spec.bins, spec.frames), in_channels=1, num_classes=classes,
                       embedding=noise_embedding(schedule))
        if config.mask_aware:
            options["cond_channels"] = 2
        if config.width:
            options["base_channels"] = config.width
        backbone_config, backbone_cls = UNet2DConfig.preset(config.preset, **options), UNet2D
    return seeded_model(lambda: backbone_cls(backbone_config), config.seed, config.prediction, schedule,
                        config.sigma_data)


# ---------------------------------------------------------------- conditioning


def conditioning(config: AudioConfig, labels: torch.Tensor | None, known: torch.Tensor,
                 mask: torch.Tensor | None = None):
    """The ``cond`` a run's denoiser takes for spectrograms shaped like ``known (B, 1, F, T)``: the labels
    (or None); for a mask-aware run a dict with the context signal of ``known`` and ``mask (B, 1, 1, T)``
    (None: nothing known, plain generation) beside them."""
    if not config.mask_aware:
        return labels
    mask = torch.zeros(known.shape[0], 1, 1, known.shape[-1], device=known.device) if mask is None else mask
    signal = context_signal(known, mask, config.context_fill)
    return {"image": signal} if labels is None else {"label": labels, "image": signal}


def guided_denoiser(model: Precond, config: AudioConfig, num_classes: int, guidance: float, cond):
    """``model`` under classifier-free guidance toward the labels in ``cond``: the unconditional
    branch gets the null class and the *same* context signal, so guidance steers the class only."""
    if guidance == 1.0:
        return model
    if isinstance(cond, dict):
        return ClassifierFreeGuidance(model, guidance, {"label": torch.tensor([num_classes]), "image": cond["image"]})
    return ClassifierFreeGuidance(model, guidance, torch.tensor([num_classes]))


def masked_loss(model: Precond, batch: dict, generator: torch.Generator, *, weighting, dropout: float,
                null_class: int, config: AudioConfig, context_dropout: float | None = None) -> torch.Tensor:
    """The training loss of a mask-aware run: each clip given a random mask
    (:func:`~multidiff.adapters.audio.random_masks`: nothing known with probability ``1 - mask_rate``),
    each label dropped to ``null_class`` with probability ``dropout`` (classifier-free guidance), or
    ``context_dropout`` where the clip has known frames (default ``dropout``), and the denoising loss
    over every frame given the known frames and the mask (:func:`conditioning`; the known frames
    weighted by ``config.known_loss_weight``). Everything random
    comes from ``generator`` (one uniform per label, then the masks, as :func:`drop_labels` draws)."""
    x0, labels = batch["x"], batch.get("cond")
    context_dropout = dropout if context_dropout is None else context_dropout
    chance = None
    if labels is not None and max(dropout, context_dropout) > 0:
        chance = torch.rand(labels.shape, generator=generator, device=labels.device)  # (B,)
    mask = random_masks(x0.shape[0], config.spectrogram, generator=generator, empty=1 - config.mask_rate,
                        gap_seconds=(config.gap_min_seconds, config.gap_max_seconds), device=x0.device)
    if chance is not None:
        given = mask.flatten(1).amax(1) > 0  # (B,): frames known
        drop = chance < torch.where(given, torch.full_like(chance, context_dropout), torch.full_like(chance, dropout))
        labels = torch.where(drop, torch.full_like(labels, null_class), labels)
    sigma = model.schedule.sample_sigmas(x0.shape[0], generator=generator, device=x0.device)
    frames = None  # every frame counts alike
    if config.known_loss_weight != 1:  # (B, 1, 1, T): the frames to fill 1, the known ones known_loss_weight
        frames = 1 - (1 - config.known_loss_weight) * mask
    return denoising_loss(model, x0, sigma, weighting=weighting, cond=conditioning(config, labels, x0, mask),
                          generator=generator, mask=frames)


def objective(config: AudioConfig, num_classes: int, conditional: bool):
    """The engine's ``loss_fn``: :func:`masked_loss` for a mask-aware run, else plain label dropout."""
    if not config.mask_aware:
        return label_dropout_objective(config, num_classes, conditional)
    return partial(masked_loss, weighting=loss_weighting(config.weighting, config.sigma_data),
                   dropout=config.label_dropout if conditional else 0.0, null_class=num_classes, config=config,
                   context_dropout=config.context_label_dropout if conditional else 0.0)
