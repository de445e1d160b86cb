"""``notes_text``: a note from a sentence ("a trumpet playing G4", "MIDI 67 on the fiddle"), the notes
recipe's temporal U-Net cross-attending to MiniLM's token states, classifier-free guidance on the text.

One pitch x instrument pair in six (:func:`~multidiff.data.prompts.held_out_combination`) is kept out
of training altogether, clips and prompts, so the evaluation can ask for pairs the model never heard;
a label-conditioned model has no way to name them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar

import torch

from ...adapters.audio import decode, encode, save_spectrograms
from ...backbones import UNet1D, UNet1DConfig
from ...backbones.config import check_dropout
from ...backbones.unet1d import CROSS_ATTENTION
from ...backbones.text_encoder import MINILM_DIM
from ...core.precond import Precond
from ...data.audio import NOTE_INSTRUMENTS, AudioDataset, fitted_clips, label_instrument, label_pitch
from ...data.prompts import grammar_for, held_out_combination
from ..base import Domain
from ..common import make_schedule, noise_embedding, seeded_model, threads_of
from ..audio import NotesConfig, load_data, write_samples
from ..audio.model import unet1d_widths
from .conditioning import PromptRecipe, check_prompt_fields, draw_prompted, evaluate_run, evaluation_prompts


@dataclass(frozen=True)
class NotesTextConfig(NotesConfig):
    """The ``notes`` recipe (16 kHz, 64 mels x 32 frames, temporal U-Net "medium") with prompts in place of
    labels, trained on five pairs in six. The U-Net attends to the prompt's tokens in its middle and after
    every block of the way up, and takes no pooled prompt in its noise embedding: a pitch word and an
    instrument word then add their own features at every resolution, which is what lets held-out pairs
    combine (measured in docs/multimodal.md). The context is MiniLM's last layer followed by its input layer
    (``text_states``), each word also unmixed with its neighbours: held-out pairs get the right pitch in 0.81
    against 0.75. 2,200 steps, not the notes recipe's 3,000, to train, sample and evaluate within 25 minutes
    on 2 cores (13.5 on a 2-core EPYC; fewer steps lost held-out phrasings)."""

    recipe: ClassVar[str] = "notes_text"
    steps: int = 2200
    guidance: float = 3.0
    label_dropout: float = 0.1  # the share of training clips given the empty prompt
    prompts_per_class: int = 32  # training prompts of each pitch x instrument pair
    partial_prompts: int = 0  # + prompts naming only its pitch or its instrument (8: worse, docs/multimodal.md)
    hold_out_combinations: bool = True  # keep one pitch x instrument pair in six out of training (for the evaluation)
    num_eval: int = 120  # samples per prompt set in eval.json
    cross_attention: str = "up"  # where the U-Net attends to the prompt: "mid", "up" (+ each up block) or "all"
    pooled_context: bool = False  # also add the mean of the prompt's token states to the noise embedding (FiLM)
    context_proj: int = 0  # > 0: the U-Net maps the 384-wide token states to this width once, for every attention
    dropout: float = 0.0  # dropout in the U-Net's residual blocks (0: none; 0.1 no better, docs/multimodal.md)
    text_states: str = "last+input"  # the context: MiniLM's last layer and its input layer ("last": the last only)

    def __post_init__(self):
        super().__post_init__()
        if self.dataset != "notes" or not self.conditional or self.mask_aware:
            raise ValueError("notes_text generates notes from prompts; keep dataset=notes, conditional=true and "
                             "mask_aware=false")
        if self.backbone != "unet1d":
            raise ValueError("notes_text cross-attends from the temporal U-Net; keep backbone=unet1d")
        if self.cross_attention not in CROSS_ATTENTION:
            raise ValueError(f"cross_attention must be one of {', '.join(CROSS_ATTENTION)}, got "
                             f"{self.cross_attention!r}")
        check_prompt_fields(self)
        if self.partial_prompts < 0:
            raise ValueError(f"partial_prompts must be >= 0, got {self.partial_prompts}")
        check_dropout(self)  # at config time, as the U-Net would at build time


CONFIGS = {NotesTextConfig.recipe: NotesTextConfig}
DESCRIPTIONS = {"notes_text": "notes from sentences (pitch and instrument in words): temporal U-Net cross-attending "
                              "to the packaged MiniLM encoder, pairs held out of training, CPU"}
# what a run folder saved before a field existed means (older notes_text runs: the last layer's states alone)
LEGACY_FIELDS = {"text_states": "last"}
EVAL_SETS = {  # report name -> (template split, labels: trained pairs or held-out pairs)
    "seen": ("train", "trained"), "held_out_phrasing": ("held_out", "trained"),
    "held_out_combination": ("train", "held_out")}


def _held_out(config: NotesTextConfig, num_classes: int) -> list[int]:
    return [k for k in range(num_classes) if config.hold_out_combinations and held_out_combination(k)]


def build_model(config: NotesTextConfig) -> Precond:
    schedule = make_schedule(config.schedule, config.sigma_data)
    spec = config.spectrogram
    options = dict(in_channels=spec.bins, length=spec.frames, io_kernel_size=config.io_kernel,
                   context_dim=MINILM_DIM, pooled_context=config.pooled_context, embedding=noise_embedding(schedule),
                   cross_attention=config.cross_attention, context_proj=config.context_proj)
    options.update(unet1d_widths(config))
    if config.dropout:
        options["dropout"] = config.dropout
    backbone_config = UNet1DConfig.preset(config.preset, **options)
    return seeded_model(lambda: UNet1D(backbone_config), config.seed, config.prediction, schedule, config.sigma_data)


class PromptAudio(PromptRecipe, Domain):
    name = "a prompt-conditioned audio"
    configs = CONFIGS
    examples = "clips"

    def load_data(self, config, *, progress: bool = False) -> AudioDataset:
        return load_data(config)

    def build_model(self, config, data: AudioDataset) -> Precond:
        return build_model(config)

    def trained_labels(self, config, data) -> list[int]:
        held_out = set(_held_out(config, data.num_classes))
        return [k for k in range(data.num_classes) if k not in held_out]

    def held_out_labels(self, config, data) -> list[int]:
        return _held_out(config, data.num_classes)

    def training_set(self, config, data: AudioDataset) -> dict:
        held_out = set(self.held_out_labels(config, data))
        keep = [i for i, k in enumerate(data.train["label"].tolist()) if k not in held_out]
        clips = fitted_clips({"audio": [data.train["audio"][i] for i in keep]}, data.sample_rate, config.spectrogram)
        return {"x": encode(clips, config.spectrogram), "cond": data.train["label"][keep].long()}

    def trainer_options(self, config, data: AudioDataset) -> dict:
        grammar = grammar_for(config.dataset)
        examples = [grammar.example(k) for k in self.trained_labels(config, data)[::7]][:20]
        return {"loss_fn": self.prompt_objective(config, data),
                "on_sample": partial(_progress_grid, config=config, examples=examples)}

    def config_from_saved(self, run_dir, saved: dict):
        """As :meth:`Domain.config_from_saved`, with :data:`LEGACY_FIELDS` for fields older runs lack."""
        return super().config_from_saved(run_dir, {**LEGACY_FIELDS, **saved})

    def run_info(self, config, data: AudioDataset) -> dict:
        return {"num_classes": data.num_classes, "class_names": list(data.class_names)}

    def after_training(self, run_dir: Path, config, data: AudioDataset, ema: Precond, *, progress: bool) -> dict:
        with threads_of(config):
            report = _evaluate(ema, config, data, num=config.num_eval, seed=0, progress=progress)
            grammar = grammar_for(config.dataset)
            count = len(NOTE_INSTRUMENTS)  # one clip per pitch, the instruments in turn
            prompts = [grammar.example(p * count + p % count) for p in range(data.num_classes // count)]
            drawn = draw(ema, config, prompts, seed=0)
        write_samples(drawn, run_dir / "samples", run_dir)
        return report


def _progress_grid(step: int, ema: Precond, run_dir: Path | None, *, config, examples) -> None:
    """Spectrograms drawn during training (no Griffin-Lim, to stay cheap)."""
    if run_dir is None:
        return
    drawn = draw(ema, config, examples, seed=0, waveforms=False)
    save_spectrograms(drawn["spectrograms"], run_dir / "progress" / f"step-{step:07d}.png", titles=examples)


def draw(model: Precond, config: NotesTextConfig, prompts: list[str], *, seed: int = 0, guidance: float | None = None,
         sampler: str | None = None, steps: int | None = None, progress: bool = False,
         waveforms: bool = True) -> dict:
    """One clip per prompt: ``{"samples": (N, clip_samples) in [-1, 1], "spectrograms": (N, 1, F, T),
    "prompts", "sample_rate", "network_seconds", "decode_seconds"}``."""
    spec = config.spectrogram
    start = time.perf_counter()
    x = draw_prompted(model, prompts, spec.shape, guidance=config.guidance if guidance is None else guidance,
                      sampler=sampler or config.sampler, steps=steps or config.sample_steps,
                      sigma_data=config.sigma_data, seed=seed, progress=progress, text_states=config.text_states)
    out = {"spectrograms": x.float().cpu().clamp(-1, 1), "prompts": list(prompts), "sample_rate": spec.sample_rate,
           "network_seconds": time.perf_counter() - start}
    if waveforms:
        start = time.perf_counter()
        out["samples"] = decode(out["spectrograms"], spec, seed=seed)
        out["decode_seconds"] = time.perf_counter() - start
    return out


def sample(run_dir: str | os.PathLike, *, num: int, sampler: str | None = None, steps: int | None = None,
           seed: int = 0, progress: bool = False, label: int | None = None, guidance: float | None = None,
           prompts: list[str] | None = None) -> dict:
    """``num`` clips from a prompt run (see :func:`draw`). ``prompts`` cycle (a warning for one that
    names nothing the notes have; "" samples unconditionally); without them, the example prompt of
    each pitch x instrument pair in turn (or only ``label``'s)."""
    config, model, chosen = DOMAIN.sampling(run_dir, num=num, prompts=prompts, label=label, guidance=guidance)
    with threads_of(config):
        return draw(model, config, chosen, seed=seed, guidance=guidance, sampler=sampler, steps=steps,
                    progress=progress)


def _evaluate(model: Precond, config, data: AudioDataset, *, num: int, seed: int, sampler: str | None = None,
              steps: int | None = None, guidance: float | None = None, progress: bool = False) -> dict:
    """Per prompt set (seen phrasings of trained pairs, held-out phrasings of trained pairs, seen
    phrasings of held-out pairs): the share of samples within 50 cents of the prompt's pitch, the
    share whose instrument the bundled classifier hears as the prompt's, and its exact-class accuracy."""
    from ...metrics.audio import load_audio_classifier, pitch_accuracy, predict_audio

    grammar = grammar_for(config.dataset)
    spec = config.spectrogram
    classifier, classifier_spec = load_audio_classifier(config.dataset, train_if_missing=True)
    held_out = _held_out(config, data.num_classes)
    trained = [k for k in range(data.num_classes) if k not in set(held_out)]
    report = {"recipe": config.recipe, "dataset": config.dataset, "num_per_set": num,
              "sampler": sampler or config.sampler, "sample_steps": steps or config.sample_steps,
              "guidance": config.guidance if guidance is None else guidance, "seed": seed,
              "encoder": "all-MiniLM-L6-v2", "text_states": config.text_states,
              "held_out_combinations": len(held_out)}
    for name, (split, which) in EVAL_SETS.items():
        labels = trained if which == "trained" else held_out
        if not labels:
            continue
        prompts, targets = evaluation_prompts(grammar, labels, num, split=split, seed=seed)
        drawn = draw(model, config, prompts, seed=seed, guidance=guidance, sampler=sampler, steps=steps,
                     progress=progress)
        pitches = torch.tensor([label_pitch(int(k)) for k in targets])
        report[f"{name}_pitch_within_50_cents"] = pitch_accuracy(drawn["samples"], spec.sample_rate,
                                                                 pitches)["pitch_within_50_cents"]
        predicted = predict_audio(drawn["samples"], spec.sample_rate, classifier, classifier_spec)
        report[f"{name}_instrument_accuracy"] = float(sum(
            label_instrument(int(p)) == label_instrument(int(k)) for p, k in zip(predicted, targets)) / len(targets))
        report[f"{name}_classifier_accuracy"] = float((predicted == targets).double().mean())
    return report


def evaluate(run_dir: str | os.PathLike, *, num: int | None = None, sampler: str | None = None,
             steps: int | None = None, seed: int = 0, progress: bool = False, guidance: float | None = None) -> dict:
    """The metrics of fresh samples per prompt set (see :func:`_evaluate`), as a JSON-able dict."""
    return evaluate_run(DOMAIN, _evaluate, run_dir, num=num, sampler=sampler, steps=steps, seed=seed,
                        progress=progress, guidance=guidance)


DOMAIN = PromptAudio(sample=sample, evaluate=evaluate, write_samples=write_samples)

__all__ = ["CONFIGS", "DESCRIPTIONS", "DOMAIN", "EVAL_SETS", "LEGACY_FIELDS", "NotesTextConfig", "PromptAudio",
           "build_model", "draw",
           "evaluate", "sample"]
