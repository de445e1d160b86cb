"""Frechet distance between two sets of feature vectors (the FID formula,
Heusel et al. 2017, Eq. 6, on any features).

Each set is summarised by a Gaussian (mean ``mu``, covariance ``C``); the
squared 2-Wasserstein distance between the two Gaussians (Dowson & Landau
1982) is

    d^2 = ||mu_1 - mu_2||^2 + tr(C_1) + tr(C_2) - 2 tr((C_1^{1/2} C_2 C_1^{1/2})^{1/2}).

Computed in float64. The matrix square roots come from symmetric
eigendecompositions with negative round-off eigenvalues clamped to 0, so
rank-deficient covariances (fewer points than features, dead features) are
handled without the complex numbers a general ``sqrtm`` produces; the cross
term is averaged over both orders, which makes the result exactly symmetric.
Covariances use the unbiased ``1 / (n - 1)`` normalisation, as FID does.

The estimate is biased upward for finite samples (roughly by
``tr(C) (1/n_1 + 1/n_2)`` in the mean term alone), so compare numbers only at
equal sample sizes, or against a real-vs-real floor at the same sizes.
"""

from __future__ import annotations

import torch


def _features(name: str, features) -> torch.Tensor:
    features = torch.as_tensor(features)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"{name} must be an (n, D) tensor of features with n >= 2, got shape "
                         f"{tuple(features.shape)}")
    features = features.detach().to("cpu", torch.float64)
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return features


def feature_statistics(features) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean (D,), unbiased covariance (D, D))`` of ``features (n, D)``, float64."""
    features = _features("features", features)
    mean = features.mean(0)
    centred = features - mean
    return mean, centred.T @ centred / (features.shape[0] - 1)


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric PSD square root of a symmetric matrix (negative eigenvalues -> 0)."""
    eigenvalues, eigenvectors = torch.linalg.eigh(0.5 * (matrix + matrix.T))
    return (eigenvectors * eigenvalues.clamp_min(0.0).sqrt()) @ eigenvectors.T


def _trace_sqrt_product(cov_a: torch.Tensor, cov_b: torch.Tensor) -> torch.Tensor:
    """tr((A^{1/2} B A^{1/2})^{1/2}): the sum of square roots of the eigenvalues of A^{1/2} B A^{1/2}."""
    root_a = _psd_sqrt(cov_a)
    inner = root_a @ cov_b @ root_a
    return torch.linalg.eigvalsh(0.5 * (inner + inner.T)).clamp_min(0.0).sqrt().sum()


def frechet_distance_gaussians(mu1, cov1, mu2, cov2) -> float:
    """Squared Frechet (W2) distance between N(mu1, cov1) and N(mu2, cov2)."""
    mu1, mu2 = (torch.as_tensor(m, dtype=torch.float64).cpu() for m in (mu1, mu2))
    cov1, cov2 = (torch.as_tensor(c, dtype=torch.float64).cpu() for c in (cov1, cov2))
    dim = mu1.shape[0]
    if mu1.shape != (dim,) or mu2.shape != (dim,) or cov1.shape != (dim, dim) or cov2.shape != (dim, dim):
        raise ValueError(f"expected means (D,) and covariances (D, D) of one D, got {tuple(mu1.shape)}, "
                         f"{tuple(cov1.shape)}, {tuple(mu2.shape)}, {tuple(cov2.shape)}")
    cross = 0.5 * (_trace_sqrt_product(cov1, cov2) + _trace_sqrt_product(cov2, cov1))
    distance = (mu1 - mu2).pow(2).sum() + (cov1.trace() + cov2.trace()) - 2.0 * cross  # order-free sums
    return float(distance.clamp_min(0.0))


def frechet_distance(features_a, features_b) -> float:
    """Frechet distance between feature sets ``features_a (n, D)`` and ``features_b (m, D)``."""
    a, b = _features("features_a", features_a), _features("features_b", features_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the feature sets differ in width: {a.shape[1]} and {b.shape[1]}")
    return frechet_distance_gaussians(*feature_statistics(a), *feature_statistics(b))
