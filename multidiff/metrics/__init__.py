"""Sample-quality metrics, one module per domain (``images``, ``audio``, ``text``,
``toy2d``, ``trajectory``) plus the shared Frechet distance (``frechet``).

The package namespace re-exports the image and toy2d metrics; import the others from
their modules."""

from .frechet import frechet_distance, frechet_distance_gaussians
from .images import ImageClassifier, evaluate_images, load_classifier, train_classifier
from .toy2d import DISTANCES, energy_distance, fit_gaussian, sample_gaussian, sliced_wasserstein, wasserstein2_1d

__all__ = ["DISTANCES", "ImageClassifier", "energy_distance", "evaluate_images", "fit_gaussian", "frechet_distance",
           "frechet_distance_gaussians", "load_classifier", "sample_gaussian", "sliced_wasserstein",
           "train_classifier", "wasserstein2_1d"]
