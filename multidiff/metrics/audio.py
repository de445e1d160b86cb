"""Audio metrics: a small log-mel classifier per bundled dataset (the feature
extractor of a Frechet distance, like FID's Inception net, and a recogniser
of class-conditional samples), and the pitch accuracy of notes.

The classifiers are :class:`~multidiff.metrics.images.ImageClassifier`
CNNs on the log-mel "image" of a clip, with their own fixed spectrogram
(``CLASSIFIER_SPECS``), so every run is judged on the same input whatever its
own spectrogram: samples are decoded to waveforms first (Griffin-Lim), then
resampled and re-encoded, i.e. judged on what a listener hears. They ship in
``datasets/classifiers/<dataset>/`` with their spectrogram and their
accuracies (held-out voices, the Asterisk recordings) in ``config.json``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..adapters.audio import (SpectrogramConfig, cents, decode, encode, estimate_f0, fit_clip, midi_to_hz,
                              resample, spectral_convergence)
from .images import (BUNDLED_DIR, CONFIG_NAME, ClassifierTraining, ImageClassifier, cache_dir, evaluate_images,
                     read_classifier, save_classifier, train_classifier)

CLASSIFIER_SPECS: dict[str, SpectrogramConfig] = {
    "spoken_digits": SpectrogramConfig(sample_rate=8000, n_fft=512, hop_length=128, n_mels=32, frames=48),
    "notes": SpectrogramConfig(sample_rate=16000, n_fft=1024, hop_length=256, n_mels=64, frames=32),
}
CLASSIFIER_TRAINING: dict[str, ClassifierTraining] = {
    "spoken_digits": ClassifierTraining(steps=3000, batch_size=64, shift=1, widths=(16, 32, 64)),
    "notes": ClassifierTraining(steps=3000, batch_size=64, shift=0, widths=(16, 32, 64)),
}
# Train on the clips *and* their Griffin-Lim round trips (wav -> mel -> Griffin-Lim -> wav), so the classifier
# judges what a sample says or plays, not the vocoder's fingerprint. Without it the notes classifier, 100% on
# real notes, recognised 5% of their own round trips: it had keyed on fine harmonic detail the mel smears.
ROUND_TRIP_AUGMENT = {"spoken_digits": False, "notes": True}
PITCH_TOLERANCE_CENTS = 50.0


def classifier_input(waves: torch.Tensor, sample_rate: int, spec: SpectrogramConfig) -> torch.Tensor:
    """Waveforms ``(B, T)`` at ``sample_rate`` -> the classifier's [0, 1] log-mel images ``(B, 1, F, T')``:
    resampled to ``spec``'s rate and fitted to its clip length (:func:`fit_clip`), then encoded."""
    waves = resample(torch.as_tensor(waves).float(), sample_rate, spec.sample_rate)
    fitted = torch.stack([fit_clip(w, spec) for w in waves]) if len(waves) else torch.zeros(0, spec.clip_samples)
    return (encode(fitted, spec) + 1) / 2


def classifier_spec(directory: str | os.PathLike) -> SpectrogramConfig:
    record = json.loads((Path(directory) / CONFIG_NAME).read_text())
    return SpectrogramConfig.from_dict(record["info"]["spectrogram"])


def build_audio_classifier(dataset: str, directory: str | os.PathLike) -> ImageClassifier:
    """Train the classifier of ``dataset`` (spoken_digits or notes) on its training split, measure it on
    the test split (held-out voices / the held-out velocity) and, for digits, on the Asterisk
    recordings, and save it with its spectrogram to ``directory``."""
    from ..data.audio import BUILD_RATE, fitted_clips, load_asterisk_digits, load_audio_dataset

    if dataset not in CLASSIFIER_SPECS:
        raise ValueError(f"no audio classifier settings for {dataset!r}; known: {', '.join(CLASSIFIER_SPECS)}")
    spec, training = CLASSIFIER_SPECS[dataset], CLASSIFIER_TRAINING[dataset]
    data = load_audio_dataset(dataset)

    def inputs(waves: torch.Tensor, labels: torch.Tensor) -> dict:
        return {"x": classifier_input(waves, spec.sample_rate, spec), "label": labels}

    def round_trip(waves: torch.Tensor) -> torch.Tensor:
        return decode(encode(waves, spec), spec)

    train_waves, test_waves = (fitted_clips(part, data.sample_rate, spec) for part in (data.train, data.test))
    train, test = inputs(train_waves, data.train["label"]), inputs(test_waves, data.test["label"])
    augment = ROUND_TRIP_AUGMENT[dataset]
    if augment:
        extra = inputs(round_trip(train_waves), data.train["label"])
        train = {"x": torch.cat([train["x"], extra["x"]]), "label": torch.cat([train["label"], extra["label"]])}
    start = time.perf_counter()
    model = train_classifier(train, test, data.num_classes, training)
    test_round_trip = inputs(round_trip(test_waves), data.test["label"])
    info = {"dataset": dataset, "source": data.info, "spectrogram": spec.to_dict(), "training": asdict(training),
            "round_trip_augment": augment, "train_size": len(train["x"]), "test_size": len(test["x"]),
            "train_accuracy": model.accuracy(train["x"], train["label"]),
            "test_round_trip_accuracy": model.accuracy(test_round_trip["x"], test_round_trip["label"]),
            "train_seconds": round(time.perf_counter() - start, 1), "threads": 1, "torch": torch.__version__}
    if dataset == "spoken_digits":
        try:
            real = load_asterisk_digits()
            real_x = inputs(fitted_clips(real, BUILD_RATE, spec), real["label"])["x"]
            info["asterisk_accuracy"] = model.accuracy(real_x, real["label"])
            info["asterisk_size"] = len(real["label"])
        except FileNotFoundError as err:
            info["asterisk_accuracy"] = None
            info["asterisk_note"] = str(err)
    save_classifier(model, directory, info)
    return model


def load_audio_classifier(dataset: str, directory: str | os.PathLike | None = None, *,
                          train_if_missing: bool = False) -> tuple[ImageClassifier, SpectrogramConfig]:
    """The classifier of ``dataset`` and its spectrogram: from ``directory``, else the bundled one, else
    the cached one, else (``train_if_missing``) trained now and cached."""
    candidates = [Path(directory)] if directory is not None else [BUNDLED_DIR / dataset, cache_dir() / dataset]
    for candidate in candidates:
        if (candidate / CONFIG_NAME).is_file():
            return read_classifier(candidate), classifier_spec(candidate)
    if directory is None and train_if_missing:
        build_audio_classifier(dataset, cache_dir() / dataset)
        return read_classifier(cache_dir() / dataset), classifier_spec(cache_dir() / dataset)
    raise FileNotFoundError(f"no audio classifier for {dataset!r} in {', '.join(repr(str(c)) for c in candidates)}; "
                            f"run `python datasets/build_classifiers.py {dataset}`")


def evaluate_audio(samples: torch.Tensor, sample_rate: int, labels: torch.Tensor | None, real_test: torch.Tensor,
                   real_train: torch.Tensor | None, real_rate: int, classifier: ImageClassifier,
                   spec: SpectrogramConfig, *, seed: int = 0) -> dict:
    """Frechet distance of classifier features (samples vs the real test clips), its real-vs-real
    floor (as many real training clips; None without ``real_train``), and the classifier's accuracy
    on the samples' labels. Waveforms ``(N, T)``; the real ones at ``real_rate``."""
    return evaluate_images(classifier_input(samples, sample_rate, spec), labels,
                           classifier_input(real_test, real_rate, spec), classifier,
                           real_train=None if real_train is None else classifier_input(real_train, real_rate, spec),
                           seed=seed)


def predict_audio(waves: torch.Tensor, sample_rate: int, classifier: ImageClassifier,
                  spec: SpectrogramConfig) -> torch.Tensor:
    """The classifier's predicted class ``(N,)`` of waveforms ``(N, T)`` at ``sample_rate``."""
    return classifier.predict(classifier_input(waves, sample_rate, spec))


def vocoder_floor(clips: torch.Tensor, labels: torch.Tensor | None, spec: SpectrogramConfig,
                  real_test: torch.Tensor, classifier: ImageClassifier, classifier_spec: SpectrogramConfig, *,
                  seed: int = 0) -> dict:
    """What a perfect spectrogram model would score after a run's decoder: real ``clips (N, T)`` at
    ``spec.sample_rate`` through wav -> spectrogram -> Griffin-Lim -> wav, judged like samples (Frechet
    against the test clips, classifier accuracy on their true ``labels``). The gap between this and
    the real-vs-real floor is the vocoder's; the gap between the samples and this is the model's."""
    round_trip = decode(encode(clips, spec), spec, seed=seed)
    metrics = evaluate_audio(round_trip, spec.sample_rate, labels, real_test, None, classifier_spec.sample_rate,
                             classifier, classifier_spec, seed=seed)
    return {"frechet_vocoder_floor": metrics["frechet"], "classifier_accuracy_vocoder_floor":
            metrics["classifier_accuracy"],
            "vocoder_spectral_convergence": float(spectral_convergence(clips, round_trip, spec).mean())}


def pitch_accuracy(samples: torch.Tensor, sample_rate: int, midi_pitches: torch.Tensor,
                   tolerance: float = PITCH_TOLERANCE_CENTS) -> dict:
    """The share of clips whose YIN f0 is within ``tolerance`` cents of the requested MIDI pitch, the
    median absolute error in cents, and the share with no pitch found (silent)."""
    f0 = estimate_f0(samples, sample_rate)
    error = cents(f0, midi_to_hz(midi_pitches)).abs()
    found = ~torch.isnan(error)
    return {"pitch_within_50_cents" if tolerance == 50 else f"pitch_within_{tolerance:g}_cents":
            float((error[found] < tolerance).double().sum() / len(error)),
            "pitch_median_abs_cents": float(error[found].median()) if found.any() else None,
            "pitch_unvoiced": float((~found).double().mean())}


__all__ = ["CLASSIFIER_SPECS", "CLASSIFIER_TRAINING", "ROUND_TRIP_AUGMENT", "build_audio_classifier", "classifier_input",
           "evaluate_audio", "load_audio_classifier", "pitch_accuracy", "predict_audio", "vocoder_floor"]
