"""toy2d metrics: distances between two point sets ``x (n, D)`` and ``y (m, D)`` (samples vs
data), and the Gaussian baseline a generative model has to beat.

Both distances are computed in float64, are symmetric, and are exactly 0 for identical sets:

* sliced Wasserstein-2 (Rabin et al. 2011; Bonneel et al. 2015):
  ``SW2 = sqrt(E_theta W2^2(theta.x, theta.y))`` over random unit directions,
  with the 1-D W2 between the projected empirical measures computed exactly,
  also for ``n != m``;
* energy distance (Szekely & Rizzo 2013, Eq. 2.1), V-statistic form,
  ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (>= 0, in the units of x).

The baseline (:func:`fit_gaussian`, :func:`sample_gaussian`) is the maximum-likelihood
Gaussian of the data: a model whose samples are no closer than its draws has learnt
nothing beyond the mean and covariance. The distances work in any dimension (the sampler
benchmarks use them on N-D mixtures too).
"""

from __future__ import annotations

import torch


def _as_points(name: str, points: torch.Tensor) -> torch.Tensor:
    points = torch.as_tensor(points)
    if points.ndim != 2 or points.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty (N, D) tensor of points, got shape {tuple(points.shape)}")
    return points.detach().to("cpu", torch.float64)


def _check_pair(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _as_points("x", x), _as_points("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of features, got {x.shape[1]} and {y.shape[1]}")
    return x, y


def wasserstein2_1d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared W2 between 1-D empirical measures, row by row: ``a (P, n)``,
    ``b (P, m)`` -> ``(P,)``; the integral over u in (0, 1) of the squared gap
    between the two step quantile functions, exact on their merged breakpoints."""
    n, m = a.shape[1], b.shape[1]
    a, b = a.sort(dim=1).values, b.sort(dim=1).values
    if n == m:
        return ((a - b) ** 2).mean(dim=1)
    levels = torch.cat([torch.arange(1, n + 1, dtype=torch.float64) / n, torch.arange(1, m + 1, dtype=torch.float64) / m])
    levels = torch.unique(torch.cat([levels.new_zeros(1), levels]))  # sorted breakpoints, 0 .. 1
    mid = 0.5 * (levels[1:] + levels[:-1])  # one point inside each interval
    width = levels[1:] - levels[:-1]
    index_a = (mid * n).floor().long().clamp(max=n - 1)
    index_b = (mid * m).floor().long().clamp(max=m - 1)
    return ((a[:, index_a] - b[:, index_b]) ** 2 @ width)


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, num_projections: int = 512,
                       generator: torch.Generator | None = None) -> float:
    """Sliced Wasserstein-2 distance between point sets ``x (n, D)`` and ``y (m, D)``.

    Directions come from ``generator`` (a fixed one by default, so repeated calls agree)."""
    x, y = _check_pair(x, y)
    if num_projections < 1:
        raise ValueError(f"num_projections must be >= 1, got {num_projections}")
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    theta = torch.randn(num_projections, x.shape[1], generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=1, keepdim=True)  # (P, D) unit directions
    return float(wasserstein2_1d(theta @ x.T, theta @ y.T).mean().sqrt())  # (P, n) projections


def _mean_distance(a: torch.Tensor, b: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """E|A - B| over all pairs, in row blocks so memory stays O(block * len(b))."""
    total = a.new_zeros(())
    for start in range(0, a.shape[0], block):
        total = total + torch.cdist(a[start:start + block], b, compute_mode="donot_use_mm_for_euclid_dist").sum()
    return total / (a.shape[0] * b.shape[0])


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` between point sets ``x`` and ``y``."""
    x, y = _check_pair(x, y)
    cross = _mean_distance(x, y) + _mean_distance(y, x)  # both orders, so the result is exactly symmetric
    return float((cross - _mean_distance(x, x) - _mean_distance(y, y)).clamp_min(0.0))


DISTANCES = {"sliced_w2": sliced_wasserstein, "energy": energy_distance}


# ---------------------------------------------------------------- the Gaussian baseline


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


__all__ = ["DISTANCES", "energy_distance", "fit_gaussian", "sample_gaussian", "sliced_wasserstein",
           "wasserstein2_1d"]
