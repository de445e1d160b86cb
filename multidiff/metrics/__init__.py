"""Sample-quality metrics: distances between point sets, baselines, the Frechet
distance and the small image classifier that supplies its features."""

from .baselines import fit_gaussian, sample_gaussian
from .classifier import ImageClassifier, evaluate_images, load_classifier, train_classifier
from .distances import DISTANCES, energy_distance, sliced_wasserstein, wasserstein2_1d
from .frechet import frechet_distance, frechet_distance_gaussians

__all__ = ["DISTANCES", "ImageClassifier", "energy_distance", "evaluate_images", "fit_gaussian", "frechet_distance",
           "frechet_distance_gaussians", "load_classifier", "sample_gaussian", "sliced_wasserstein",
           "train_classifier", "wasserstein2_1d"]
