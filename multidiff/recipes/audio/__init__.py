"""Audio recipes: class-conditional spectrogram diffusion with classifier-free guidance, decoded to
sound by Griffin-Lim, and time inpainting by a mask-aware denoiser.

=====================  ======================================================
``spoken_digits``      the CPU default: "zero" ... "nine" by espeak-ng and
                       flite voices, 16 kHz, 96 mels x 48 frames (0.75 s); a
                       mask-aware temporal U-Net over the frames (mel bins as
                       channels), Euler ancestral in 12 steps; ~15 minutes
                       on 2 cores (``spoken_digits_16k``: the same)
``spoken_digits_8k``   the default before #28: 8 kHz, 32 mels x 48 frames
``notes``              single notes by fluidsynth, 16 kHz, 64 mels x 32
                       frames (0.5 s), conditioned on (pitch, instrument):
                       label = ``pitch_index * 6 + instrument``
``spoken_digits_gpu``  one GPU: 16 kHz, 64 mels x 64 frames (1 s), more
                       clips, a 2-D U-Net
``notes_gpu``          one GPU: 16 kHz, 128 mels x 64 frames (1 s), a 2-D U-Net
=====================  ======================================================

All share :class:`AudioConfig`, whose spectrogram fields are saved with the run,
so sampling always decodes with what the run was trained on. Griffin-Lim
inverts 96 mels of a 512-point STFT at 16 kHz at spectral convergence 0.12 on
held-out clips (8 kHz / 32 mels: 0.58), linear magnitudes at 0.06. Two things
made the 16 kHz default work on 2 cores (docs/results/audio.md): the mel
inverse is non-negative least squares (the plain one turned small errors in
the narrow low bands into loud spikes), and the sampler is ancestral (the
deterministic ones leave a grain on this network's spectrograms).

A *mask-aware* run (``mask_aware``; ``spoken_digits``) reads the known frames and
their mask as extra input channels; half its training clips get a random gap
(50-300 ms) or continuation to fill, the other half nothing known, so the same
network samples from scratch and inpaints with its context in view
(replacement keeps the known frames exact on top). In ``spoken_digits`` the
context holds the straight line across the hidden frames (``context_fill``),
the U-Net's first level is as wide as the bins (``top_width``), and a fill given
no label is guided toward the digit the known frames sound like to the run
(``inpaint_infer_label``).

Evaluation (``eval.json``, ``multidiff eval``) decodes samples to waveforms and
judges them as audio with the bundled log-mel classifier of the dataset
(:mod:`multidiff.metrics.audio`): its accuracy on class-conditional samples and
the Frechet distance of its features against the held-out clips, beside the
real-vs-real floor and the vocoder floor (real clips through the same
spectrogram and Griffin-Lim); for notes also the share of samples whose f0 is
within 50 cents of the requested pitch and whose instrument the classifier
hears as the one asked for. :func:`evaluate_inpainting` judges fills inside
the hidden frames beside silence, linear interpolation and the unconditioned
model with replacement only.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from ...adapters.audio import encode
from ...core.precond import Precond
from ...data.audio import AudioDataset, fitted_clips
from ..base import Domain, first
from ..common import threads_of
from ..registry import register
from .evaluation import _evaluate, evaluate, evaluate_inpainting
from .model import (BACKBONES, CLASSIFIER_DATASETS, CONFIGS, DESCRIPTIONS, SPEC_FIELDS, AudioConfig, NotesConfig,
                    NotesGPUConfig, SpokenDigits8kConfig, SpokenDigits16kConfig, SpokenDigitsConfig,
                    SpokenDigitsGPUConfig, build_model, conditioning, guided_denoiser, load_data, masked_loss,
                    objective)
from .sampling import (_progress_grid, calibration_problem, config_of, draw, infer_labels, inpaint_test, load_run,
                       read_config, sample, titles, write_samples)


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
        return {"loss_fn": objective(config, data.num_classes, config.conditional),
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

    def config_from_saved(self, run_dir, saved: dict):
        """As :meth:`Domain.config_from_saved`, with :data:`LEGACY_FIELDS` for fields older runs lack."""
        return config_of(run_dir, saved)


DOMAIN = Audio(sample=sample, evaluate=evaluate, write_samples=write_samples, inpaint=inpaint_test,
               calibration=calibration_problem)
register(DOMAIN, DESCRIPTIONS)


def default_out(config: AudioConfig) -> Path:
    return DOMAIN.default_out(config)


def train(config: AudioConfig = SpokenDigitsConfig(), out: str | os.PathLike | None = None, *,
          progress: bool = False) -> Path:
    """Train, save, sample and evaluate (:meth:`Domain.train`); the run folder gets config.json,
    model/ema.safetensors, metrics.jsonl, checkpoints/, progress/step-N.png, samples.png/.npz,
    samples/ (WAVs) and eval.json."""
    return DOMAIN.train(config, out, progress=progress)


__all__ = ["AudioConfig", "BACKBONES", "CLASSIFIER_DATASETS", "CONFIGS", "DOMAIN", "NotesConfig", "NotesGPUConfig",
           "SPEC_FIELDS", "SpokenDigits8kConfig", "SpokenDigits16kConfig", "SpokenDigitsConfig",
           "SpokenDigitsGPUConfig", "build_model", "conditioning", "config_of", "draw", "evaluate",
           "evaluate_inpainting", "guided_denoiser", "infer_labels", "inpaint_test", "load_run", "masked_loss",
           "objective", "read_config", "sample", "titles", "train", "write_samples"]
