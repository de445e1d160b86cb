"""Evaluating an audio run: its samples as audio (the bundled classifier's accuracy and Frechet
distance beside the real-vs-real floor and the vocoder floor, pitch and instrument for notes), and
its inpainting fills beside the simple baselines (silence, a straight line across the gap, the
unconditioned model held by replacement only)."""

from __future__ import annotations

import os

import torch

from ...adapters.audio import (decode, encode, hidden_lsd, hidden_rms, interpolate_frames, silence_fill,
                               spectral_convergence)
from ...data.audio import AudioDataset, fitted_clips, label_instrument, label_pitch
from ..common import threads_of
from .model import CLASSIFIER_DATASETS, AudioConfig, load_data
from .sampling import inpaint_test, read_config, sample

ROUND_TRIP_CLIPS = 100  # held-out clips whose decoder round trip eval.json reports


def evaluate(run_dir: str | os.PathLike, *, num: int | None = None, sampler: str | None = None,
             steps: int | None = None, seed: int = 0, progress: bool = False, guidance: float | None = None) -> dict:
    """The metrics of fresh samples (see the package docstring), as a JSON-able dict."""
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
    from ...metrics.audio import (evaluate_audio, load_audio_classifier, pitch_accuracy, predict_audio,
                                  vocoder_floor)

    spec = config.spectrogram
    n = len(drawn["samples"])
    audio_seconds = n * spec.clip_seconds
    report = {"recipe": config.recipe, "dataset": config.dataset, "num": n,
              "sampler": config.sampler if sampler is None else sampler,
              "sample_steps": config.sample_steps if steps is None else steps, "seed": seed,
              "spectrogram": f"{spec.sample_rate} Hz, {spec.bins} {spec.scale} bins x {spec.frames} frames",
              "network_seconds_per_audio_second": drawn["network_seconds"] / audio_seconds,
              "griffin_lim_seconds_per_audio_second": drawn["decode_seconds"] / audio_seconds,
              "threads": torch.get_num_threads()}
    if "labels" in drawn:
        report["guidance"] = config.guidance if guidance is None else guidance
    if config.dataset == "notes" and "labels" in drawn:
        pitches = torch.tensor([label_pitch(int(k)) for k in drawn["labels"]])
        report.update(pitch_accuracy(drawn["samples"], spec.sample_rate, pitches))
    held_out = fitted_clips({"audio": data.test["audio"][:ROUND_TRIP_CLIPS]}, data.sample_rate, spec)
    report["round_trip_spectral_convergence"] = float(spectral_convergence(
        held_out, decode(encode(held_out, spec), spec, seed=seed), spec).mean())
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
    if config.dataset == "notes" and "labels" in drawn:
        predicted = predict_audio(drawn["samples"], spec.sample_rate, classifier, classifier_spec)
        report["instrument_accuracy"] = float(sum(label_instrument(int(p)) == label_instrument(int(k))
                                                  for p, k in zip(predicted, drawn["labels"])) / n)
    pick = torch.randperm(len(data.train["audio"]), generator=torch.Generator().manual_seed(seed))[:n]
    clips = fitted_clips({"audio": [data.train["audio"][i] for i in pick]}, data.sample_rate, spec)
    labels = data.train["label"][pick] if config.conditional and data.num_classes > 1 else None
    report.update(vocoder_floor(clips, labels, spec, real_test, classifier, classifier_spec, seed=seed))
    report["frechet_vocoder_floor_over_floor"] = report["frechet_vocoder_floor"] / metrics["frechet_floor"]
    return report


def evaluate_inpainting(run_dir: str | os.PathLike, *, region: str | None = None, mask: torch.Tensor | None = None,
                        num: int = 100, seed: int = 0, steps: int | None = None, progress: bool = False,
                        reconstruction_scale: float = 0.0) -> dict:
    """Fill ``num`` held-out clips (``region`` or a known-frame ``mask``, as :func:`inpaint_test`) and judge
    each fill inside the hidden frames beside the baselines: the run's fill, the same network
    unconditioned (mask hidden from it, no label) held by replacement only, silence, and a straight line
    across the gap (:func:`~multidiff.adapters.audio.interpolate_frames`). Per method: RMS in model
    units and log-spectral distance (dB) inside the hidden frames, and the share of decoded clips the
    bundled classifier recognises as their class; a run that starts its fills from the noised
    straight line (``inpaint_start_sigma``) also gets ``model from noise``, one that infers the fill's label
    (``inpaint_infer_label``) ``model, no label`` and ``inferred_label_accuracy``; ``original`` is the real
    clip itself and ``original_decoded`` its spectrogram through the run's decoder."""
    from ...metrics.audio import load_audio_classifier, predict_audio

    config = read_config(run_dir)
    spec = config.spectrogram
    options = dict(num=num, region=region, mask=mask, seed=seed, steps=steps, progress=progress)
    filled = inpaint_test(run_dir, reconstruction_scale=reconstruction_scale, **options)
    reference, known = filled["reference"], filled["mask"]
    fills = {"model": filled["spectrograms"]}
    if config.inpaint_start_sigma > 0:  # the same fill from pure noise, not from the noised straight line
        fills["model from noise"] = inpaint_test(run_dir, reconstruction_scale=reconstruction_scale, start_sigma=0,
                                                 **options)["spectrograms"]
    if "inferred_labels" in filled:  # the same fill without the inferred label: the null class
        fills["model, no label"] = inpaint_test(run_dir, reconstruction_scale=reconstruction_scale, infer_label=False,
                                                **options)["spectrograms"]
    if config.mask_aware:
        fills["model, replacement only"] = inpaint_test(run_dir, context=False, start_sigma=0, infer_label=False,
                                                        **options)["spectrograms"]
    fills["silence"] = silence_fill(reference, known)
    fills["linear interpolation"] = interpolate_frames(reference, known)
    hidden_seconds = float((known == 0).float().sum(-1).mean()) * spec.hop_length / spec.sample_rate
    report = {"recipe": config.recipe, "region": region if mask is None else "mask", "num": num, "seed": seed,
              "hidden_seconds": hidden_seconds, "reconstruction_scale": reconstruction_scale,
              "start_sigma": config.inpaint_start_sigma, "methods": {}}
    if "inferred_labels" in filled:  # how often the run named the clip's class from its known frames
        report["inferred_label_accuracy"] = float((filled["inferred_labels"] == filled["labels"]).double().mean())
    classifier = None
    if config.dataset in CLASSIFIER_DATASETS:
        classifier, classifier_spec = load_audio_classifier(config.dataset, train_if_missing=True)
    labels = filled["labels"]

    def recognised(waves):
        if classifier is None:
            return None
        return float((predict_audio(waves, spec.sample_rate, classifier, classifier_spec) == labels).double().mean())

    with threads_of(config):
        for name, spectrograms in fills.items():
            waves = filled["samples"] if name == "model" else decode(spectrograms, spec, seed=seed)
            report["methods"][name] = {"rms": float(hidden_rms(spectrograms, reference, known).mean()),
                                       "lsd_db": float(hidden_lsd(spectrograms, reference, known, spec).mean()),
                                       "accuracy": recognised(waves)}
        report["methods"]["original"] = {"rms": 0.0, "lsd_db": 0.0, "accuracy": recognised(filled["reference_audio"])}
        report["methods"]["original_decoded"] = {"rms": 0.0, "lsd_db": 0.0,
                                                 "accuracy": recognised(decode(reference, spec, seed=seed))}
    line = report["methods"]["linear interpolation"]["rms"]
    report["rms_over_linear_interpolation"] = report["methods"]["model"]["rms"] / line if line else None
    return report


__all__ = ["evaluate", "evaluate_inpainting"]
