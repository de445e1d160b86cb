"""Image metrics: a small CNN classifier for grey images (the feature extractor of the
Frechet distance and the judge of class-conditional samples) and :func:`evaluate_images`.

Like FID's Inception network, but small and trained on the dataset itself, so
it ships with the project (``datasets/classifiers/<dataset>/``, 140-400 kB) and
nothing is downloaded. ``features()`` is the global-average-pooled output of
the last convolution, the input of the final linear layer.

:func:`evaluate_images` returns

==========================  ===================================================
``frechet``                 Frechet distance between the classifier features
                            of the samples and of the real test split
``frechet_floor``           the same for ``n = len(samples)`` real *training*
                            images against the same test split (the mean of
                            ``floor_draws`` seeded draws): what a model that
                            reproduces the training data exactly scores at
                            this sample size. ``None`` unless ``real_train``
                            is given
``classifier_accuracy``     fraction of class-conditional samples that the
                            classifier assigns to their conditioning label
                            (``None`` without labels)
``classifier_test_accuracy``  the classifier's accuracy on the real test split
==========================  ===================================================

Inputs are data-space images: uint8 0..255 or float in [0, 1] (decode model
samples with :func:`multidiff.adapters.image.decode` first, or call
:func:`evaluate_samples`, which does).

The audio metrics reuse the same network on log-mel "images"
(:mod:`multidiff.metrics.audio`).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..adapters.image import decode
from ..data.cache import cache_dir as shared_cache_dir
from ..runtime import cpu_threads
from ..train.checkpoint import CheckpointError
from ..train.side import fit, load_side_network, save_side_network
from .frechet import frechet_distance

FORMAT_VERSION = 1
KIND = "multidiff-image-classifier"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "classifier.safetensors"
BUNDLED_DIR = Path(__file__).resolve().parents[2] / "datasets" / "classifiers"


def cache_dir() -> Path:
    """Where classifiers trained on demand are kept: ``$MULTIDIFF_CACHE/classifiers``
    (default ``~/.cache/multidiff/classifiers``)."""
    return shared_cache_dir("classifiers")


# ---------------------------------------------------------------- the network


@dataclass(frozen=True)
class ClassifierConfig:
    in_shape: tuple[int, int, int]  # (C, H, W) of the images it was trained on; H, W >= 8
    num_classes: int
    widths: tuple[int, int, int] = (16, 32, 64)  # channels of the three stages; features are widths[-1] wide

    def __post_init__(self):
        object.__setattr__(self, "in_shape", tuple(int(v) for v in self.in_shape))
        object.__setattr__(self, "widths", tuple(int(v) for v in self.widths))
        if len(self.in_shape) != 3 or min(self.in_shape[1:]) < 8 or self.in_shape[0] < 1:
            raise ValueError(f"in_shape must be (C, H, W) with H, W >= 8, got {self.in_shape}")
        if self.num_classes < 2 or len(self.widths) != 3 or min(self.widths) < 1:
            raise ValueError(f"need num_classes >= 2 and three positive widths, got {self.num_classes}, "
                             f"{self.widths}")


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]


class ImageClassifier(nn.Module):
    """conv-conv-pool, conv-conv-pool, conv, global average pool, linear.

    Two 2x poolings: 8 x 8 -> 2 x 2, 16 -> 4, 28 -> 7 before the average.
    ``test_accuracy`` holds the accuracy measured when it was trained (or None)."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        channels, (w1, w2, w3) = config.in_shape[0], config.widths
        self.trunk = nn.Sequential(*_conv(channels, w1), *_conv(w1, w1), nn.MaxPool2d(2),
                                   *_conv(w1, w2), *_conv(w2, w2), nn.MaxPool2d(2),
                                   *_conv(w2, w3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(w3, config.num_classes)
        self.test_accuracy: float | None = None

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Data-space images (uint8, or float in [0, 1]) -> the network's input, float in [-1, 1]."""
        images = torch.as_tensor(images)
        if tuple(images.shape[1:]) != self.config.in_shape or images.ndim != 4:
            raise ValueError(f"this classifier takes images of shape (B, {', '.join(map(str, self.config.in_shape))})"
                             f", got {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        elif not torch.is_floating_point(images):
            raise TypeError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
        elif images.numel() and (images.min() < 0.0 or images.max() > 1.0):
            raise ValueError(f"float images must lie in [0, 1] (got min {float(images.min()):.3g}, max "
                             f"{float(images.max()):.3g}); decode model samples from [-1, 1] first")
        device = next(self.parameters()).device
        return images.to(device, torch.float32) * 2.0 - 1.0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(B, widths[-1])`` of prepared input ``x``."""
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` of prepared input ``x``."""
        return self.head(self.features(x))

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Features of data-space images, in eval mode and batches: ``(N, widths[-1])`` float32 on CPU."""
        was_training = self.training
        self.eval()
        try:
            return torch.cat([self.features(self.prepare(images[i:i + batch_size])).cpu()
                              for i in range(0, len(images), batch_size)])
        finally:
            self.train(was_training)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Predicted classes ``(N,)`` int64 of data-space images."""
        return self.head(self.embed(images, batch_size).to(self.head.weight.device)).argmax(1).cpu()

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        return float((self.predict(images) == torch.as_tensor(labels).cpu()).double().mean())


# ---------------------------------------------------------------- training


@dataclass(frozen=True)
class ClassifierTraining:
    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-3  # Adam, cosine-decayed to 0
    weight_decay: float = 1e-4
    shift: int = 1  # random translation by up to this many pixels (background padded); 0 disables it
    seed: int = 0
    widths: tuple[int, int, int] = (16, 32, 64)  # the network's (ClassifierConfig.widths), kept with the recipe

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(v) for v in self.widths))
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0 or self.shift < 0:
            raise ValueError(f"need steps >= 1, batch_size >= 1, lr > 0 and shift >= 0, got {self}")


def _random_shift(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by an integer offset in [-shift, shift]^2, filling with the background (-1)."""
    if shift == 0:
        return x
    height, width = x.shape[-2:]
    padded = nn.functional.pad(x, (shift,) * 4, value=-1.0)
    offsets = torch.randint(0, 2 * shift + 1, (x.shape[0], 2), generator=generator)  # (B, 2)
    rows = offsets[:, :1] + torch.arange(height)  # (B, H)
    cols = offsets[:, 1:] + torch.arange(width)  # (B, W)
    batch = torch.arange(x.shape[0])[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def train_classifier(train: dict[str, torch.Tensor], test: dict[str, torch.Tensor] | None = None,
                     num_classes: int | None = None, training: ClassifierTraining = ClassifierTraining(), *,
                     threads: int = 1) -> ImageClassifier:
    """Train an :class:`ImageClassifier` on a split ``{"x": data-space images, "label"}`` (CPU).

    The same ``training.seed`` gives the same weights (initialisation and
    batches come from it; the global RNG is left untouched). With ``test`` the
    result's ``test_accuracy`` is measured on it. ``threads`` torch threads
    are used: 1 by default, because for a network this small more threads
    were slower (3x with 2 threads on a busy 2-core machine, measured), and a
    fixed count fixes the float summation order, so the weights repeat
    bit for bit on a machine whatever its core count."""
    with cpu_threads(threads):
        return _train(train, test, num_classes, training)


def _train(train, test, num_classes, training: ClassifierTraining) -> ImageClassifier:
    images, labels = train["x"], train["label"].long()
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    config = ClassifierConfig(tuple(images.shape[1:]), num_classes, training.widths)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(training.seed)
        model = ImageClassifier(config)
    generator = torch.Generator().manual_seed(training.seed)
    inputs = model.prepare(images)  # (N, C, H, W) in [-1, 1]
    model.train()
    order, position = torch.randperm(len(inputs), generator=generator), 0

    def batch_loss(step: int) -> torch.Tensor:  # epochs of shuffled batches; a short tail is dropped
        nonlocal order, position
        if position + training.batch_size > len(order):
            order, position = torch.randperm(len(inputs), generator=generator), 0
        index = order[position:position + training.batch_size]
        position += training.batch_size
        x = _random_shift(inputs[index], training.shift, generator)
        return nn.functional.cross_entropy(model(x), labels[index])

    fit(model, batch_loss, steps=training.steps, lr=training.lr, weight_decay=training.weight_decay,
        decay="cosine_to_zero", desc="classifier")
    model.eval()
    if test is not None:
        model.test_accuracy = model.accuracy(test["x"], test["label"])
    return model


# ---------------------------------------------------------------- save / load


def save_classifier(model: ImageClassifier, directory: str | os.PathLike, info: dict | None = None) -> Path:
    """Write ``classifier.safetensors`` and ``config.json`` (atomically; the config last)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record = {"format_version": FORMAT_VERSION, "kind": KIND, "config": asdict(model.config),
              "test_accuracy": model.test_accuracy, "info": info or {}}
    save_side_network(model, directory / WEIGHTS_NAME, directory / CONFIG_NAME, record)
    return directory


def read_classifier(directory: str | os.PathLike) -> ImageClassifier:
    """Load a classifier folder written by :func:`save_classifier` (JSON + safetensors, nothing unpickled)."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"{str(directory)!r} is not a classifier folder (it needs {CONFIG_NAME} and "
                                f"{WEIGHTS_NAME}); build one with `python datasets/build_classifiers.py`")
    try:
        record, state = load_side_network(weights_path, config_path)
        if not isinstance(record, dict) or record.get("kind") != KIND or record.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{str(config_path)!r} is not a format-{FORMAT_VERSION} {KIND} config; rebuild "
                                  f"it with `python datasets/build_classifiers.py`")
        model = ImageClassifier(ClassifierConfig(**record["config"]))
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"cannot load the classifier in {str(directory)!r} ({err}); the files are corrupt "
                              f"or from another version, rebuild with `python datasets/build_classifiers.py`"
                              ) from None
    model.test_accuracy = record.get("test_accuracy")
    return model.eval().requires_grad_(False)


# Training settings of the bundled classifiers (datasets/build_classifiers.py uses these too).
CLASSIFIER_TRAINING: dict[str, ClassifierTraining] = {
    "digits": ClassifierTraining(steps=1500, shift=1),
    "mnist5k": ClassifierTraining(steps=2500, shift=1),
    "fashion": ClassifierTraining(steps=6000, batch_size=128, shift=0, widths=(32, 64, 64)),
}


def build_classifier(dataset: str, directory: str | os.PathLike, **options) -> ImageClassifier:
    """Train the classifier of registered dataset ``dataset`` with its settings and save it to ``directory``."""
    from ..data.images import dataset_info, load_image_dataset

    if dataset not in CLASSIFIER_TRAINING:
        raise ValueError(f"no classifier settings for {dataset!r}; known: {', '.join(CLASSIFIER_TRAINING)}")
    data = load_image_dataset(dataset, **options)
    training = CLASSIFIER_TRAINING[dataset]
    start = time.perf_counter()
    model = train_classifier(data.train, data.test, data.num_classes, training)
    seconds = time.perf_counter() - start
    info = {"dataset": dataset, "source": dataset_info(dataset), "training": asdict(training),
            "train_size": len(data.train["x"]), "test_size": len(data.test["x"]),
            "train_accuracy": model.accuracy(data.train["x"], data.train["label"]),
            "train_seconds": round(seconds, 1), "threads": 1, "torch": torch.__version__}
    save_classifier(model, directory, info)
    return model


def load_classifier(dataset: str, directory: str | os.PathLike | None = None, *,
                    train_if_missing: bool = True, **data_options) -> ImageClassifier:
    """The classifier for ``dataset``: from ``directory`` when given; else the one
    shipped in ``datasets/classifiers/<dataset>``, else the cached one; else
    (``train_if_missing``) train it now (``data_options`` go to the dataset's
    loader, e.g. ``root=`` for fashion) and cache it under :func:`cache_dir`.
    Training takes ~20 s for digits, minutes for mnist5k, ~15-30 min for fashion."""
    if directory is not None:
        return read_classifier(directory)
    for candidate in (BUNDLED_DIR / dataset, cache_dir() / dataset):
        if (candidate / CONFIG_NAME).is_file():
            return read_classifier(candidate)
    if not train_if_missing:
        raise FileNotFoundError(f"no classifier for {dataset!r} in {str(BUNDLED_DIR / dataset)!r} or "
                                f"{str(cache_dir() / dataset)!r}; run `python datasets/build_classifiers.py "
                                f"{dataset}` or pass train_if_missing=True")
    build_classifier(dataset, cache_dir() / dataset, **data_options)
    return read_classifier(cache_dir() / dataset)


# ---------------------------------------------------------------- evaluation


def evaluate_images(samples: torch.Tensor, labels: torch.Tensor | None, real_test: torch.Tensor,
                    classifier: ImageClassifier, *, real_train: torch.Tensor | None = None,
                    real_test_labels: torch.Tensor | None = None, floor_draws: int = 5, seed: int = 0) -> dict:
    """Sample-quality numbers for data-space ``samples (n, C, H, W)`` (see the module docstring).

    ``labels``: the class each sample was conditioned on, or None.
    ``real_train``: real images disjoint from ``real_test`` (the training
    split); the floor is the mean over ``floor_draws`` seeded draws of ``n``
    of them (its spread is ``frechet_floor_std``).
    ``real_test_labels``: re-measure the classifier's test accuracy instead of
    reporting the stored one."""
    n = len(samples)
    if n < 2 or len(real_test) < 2:
        raise ValueError(f"need at least 2 samples and 2 real test images, got {n} and {len(real_test)}")
    test_features = classifier.embed(real_test)
    sample_features = classifier.embed(samples)
    report = {"num_samples": n, "num_test": len(real_test),
              "frechet": frechet_distance(sample_features, test_features),
              "frechet_floor": None, "frechet_floor_std": None, "classifier_accuracy": None,
              "classifier_test_accuracy": classifier.test_accuracy}
    if real_train is not None:
        if len(real_train) < n:
            raise ValueError(f"the floor needs at least as many real training images as samples ({n}), got "
                             f"{len(real_train)}; evaluate fewer samples")
        if floor_draws < 1:
            raise ValueError(f"floor_draws must be >= 1, got {floor_draws}")
        generator = torch.Generator().manual_seed(seed)
        picks = [torch.randperm(len(real_train), generator=generator)[:n] for _ in range(floor_draws)]
        used = torch.unique(torch.cat(picks))  # sorted; embed each needed training image once
        train_features = classifier.embed(real_train[used])
        floors = torch.tensor([frechet_distance(train_features[torch.searchsorted(used, pick)], test_features)
                               for pick in picks], dtype=torch.float64)
        report["frechet_floor"] = float(floors.mean())
        report["frechet_floor_std"] = float(floors.std()) if floor_draws > 1 else None
    if labels is not None:
        labels = torch.as_tensor(labels).cpu().long()
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},) like the samples, got {tuple(labels.shape)}")
        with torch.no_grad():
            predicted = classifier.head(sample_features.to(classifier.head.weight.device)).argmax(1).cpu()
        report["classifier_accuracy"] = float((predicted == labels).double().mean())
    if real_test_labels is not None:
        report["classifier_test_accuracy"] = classifier.accuracy(real_test, real_test_labels)
    return report


def evaluate_samples(samples: torch.Tensor, labels: torch.Tensor | None, real_test: torch.Tensor,
                     classifier: ImageClassifier, **options) -> dict:
    """:func:`evaluate_images` on model-space ``samples`` in [-1, 1] (decoded to [0, 1] first)."""
    return evaluate_images(decode(samples), labels, real_test, classifier, **options)


__all__ = ["BUNDLED_DIR", "CLASSIFIER_TRAINING", "CONFIG_NAME", "ClassifierConfig", "ClassifierTraining",
           "FORMAT_VERSION", "ImageClassifier", "KIND", "WEIGHTS_NAME", "build_classifier", "cache_dir",
           "evaluate_images", "evaluate_samples", "load_classifier", "read_classifier", "save_classifier",
           "train_classifier"]
