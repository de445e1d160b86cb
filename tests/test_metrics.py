"""Distances between point sets, and the Gaussian baseline."""

import math

import pytest
import torch

from multidiff.metrics import (DISTANCES, energy_distance, fit_gaussian, sample_gaussian, sliced_wasserstein,
                               wasserstein2_1d)


def _points(n, seed, dim=2):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("name", list(DISTANCES))
def test_identical_sets_are_at_distance_zero(name):
    x = _points(300, 0)
    assert DISTANCES[name](x, x.clone()) == 0.0


@pytest.mark.parametrize("name", list(DISTANCES))
def test_distance_grows_with_a_shift(name):
    x, y = _points(400, 0), _points(400, 1)
    shift = torch.tensor([1.0, 0.0], dtype=torch.float64)
    same, small, large = (DISTANCES[name](x, y + k * shift) for k in (0.0, 0.5, 2.0))
    assert same < small < large


@pytest.mark.parametrize("name", list(DISTANCES))
def test_symmetric_also_for_unequal_sizes(name):
    x, y = _points(250, 0), _points(333, 1) * 1.5 + 0.2
    assert float(DISTANCES[name](x, y)) == pytest.approx(float(DISTANCES[name](y, x)), rel=1e-12)


def test_sliced_w2_of_a_translation():
    """Translating a set by s moves every projection by theta.s, so SW2^2 = E (theta.s)^2
    = |s|^2 / D for directions uniform on the sphere; with P directions the mean of
    cos^2 has std sqrt(1/8 / P) ~ 0.6% at P = 4096 (D = 2): allow 5%."""
    x, s = _points(500, 0), torch.tensor([0.6, -0.8], dtype=torch.float64)
    assert float(sliced_wasserstein(x, x + s, num_projections=4096)) == pytest.approx(float(s.norm()) / math.sqrt(2),
                                                                                rel=0.05)


def test_w2_1d_for_unequal_sizes_matches_quadrature():
    """The exact merged-breakpoint formula against a fine midpoint rule on the quantile functions."""
    a, b = _points(37, 0, dim=1).T, _points(53, 1, dim=1).T + 0.3  # (1, n) rows
    u = (torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000
    qa = a.sort(dim=1).values[0, (u * 37).long()]
    qb = b.sort(dim=1).values[0, (u * 53).long()]
    assert wasserstein2_1d(a, b).item() == pytest.approx(((qa - qb) ** 2).mean().item(), rel=1e-4)


def test_energy_distance_between_point_masses():
    """Two single points at distance d: 2 d - 0 - 0."""
    x, y = torch.zeros(1, 2), torch.tensor([[3.0, 4.0]])
    assert float(energy_distance(x, y)) == pytest.approx(10.0)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="same number of features"):
        sliced_wasserstein(_points(10, 0, 2), _points(10, 0, 3))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        energy_distance(torch.zeros(10), torch.zeros(10))


def test_fitted_gaussian_recovers_mean_and_covariance():
    mean = torch.tensor([1.0, -2.0], dtype=torch.float64)
    covariance = torch.tensor([[2.0, 0.6], [0.6, 0.5]], dtype=torch.float64)
    x = sample_gaussian(mean, covariance, 200_000, torch.Generator().manual_seed(0))
    fitted_mean, fitted_cov = fit_gaussian(x)
    # standard errors ~ sqrt(var / n) <= sqrt(2 * 2^2 / 2e5) = 0.0063: allow 0.03
    assert torch.allclose(fitted_mean, mean, atol=0.03) and torch.allclose(fitted_cov, covariance, atol=0.03)


def test_gaussian_with_a_singular_covariance():
    x = sample_gaussian(torch.zeros(2, dtype=torch.float64), torch.tensor([[1.0, 1.0], [1.0, 1.0]],
                        dtype=torch.float64), 1000)
    assert torch.allclose(x[:, 0], x[:, 1], atol=1e-6)  # all mass on the diagonal
