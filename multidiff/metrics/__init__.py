"""Sample-quality metrics that need no domain knowledge: distances between point sets and baselines."""

from .baselines import fit_gaussian, sample_gaussian
from .distances import DISTANCES, energy_distance, sliced_wasserstein, wasserstein2_1d

__all__ = ["DISTANCES", "energy_distance", "fit_gaussian", "sample_gaussian", "sliced_wasserstein", "wasserstein2_1d"]
