"""The former home of the image metrics, now :mod:`multidiff.metrics.images`; this alias keeps
``from multidiff.metrics.classifier import ...`` working. New code imports from ``images``."""

from .images import (BUNDLED_DIR, CLASSIFIER_TRAINING, CONFIG_NAME, FORMAT_VERSION, KIND, WEIGHTS_NAME,
                     ClassifierConfig, ClassifierTraining, ImageClassifier, build_classifier, cache_dir,
                     evaluate_images, evaluate_samples, load_classifier, read_classifier, save_classifier,
                     train_classifier)

__all__ = ["BUNDLED_DIR", "CLASSIFIER_TRAINING", "CONFIG_NAME", "ClassifierConfig", "ClassifierTraining",
           "FORMAT_VERSION", "ImageClassifier", "KIND", "WEIGHTS_NAME", "build_classifier", "cache_dir",
           "evaluate_images", "evaluate_samples", "load_classifier", "read_classifier", "save_classifier",
           "train_classifier"]
