"""Reference samplers that a generative model has to beat."""

from __future__ import annotations

import torch


def fit_gaussian(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximum-likelihood Gaussian of points ``x (n, D)``: ``(mean (D,), covariance (D, D))``, float64."""
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need an (n, D) tensor with n >= 2 to fit a Gaussian, got shape {tuple(x.shape)}")
    mean = x.mean(0)
    centred = x - mean
    return mean, centred.T @ centred / x.shape[0]


def sample_gaussian(mean: torch.Tensor, covariance: torch.Tensor, n: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` draws from N(mean, covariance): ``(n, D)`` float64 (covariance may be singular)."""
    # eigh rather than Cholesky: a degenerate direction (zero variance) is allowed
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    root = eigenvectors * eigenvalues.clamp_min(0.0).sqrt()  # (D, D), root @ root.T == covariance
    z = torch.randn(n, mean.shape[0], generator=generator, dtype=torch.float64)
    return mean + z @ root.T
