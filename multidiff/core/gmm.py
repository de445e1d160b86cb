"""A Gaussian mixture with a closed-form ideal denoiser.

For data ``x0 ~ sum_k w_k N(mu_k, diag(s_k^2))`` and ``x = x0 + sigma n``, the
noisy marginal is the mixture with variances ``s_k^2 + sigma^2`` and the
ideal denoiser (the posterior mean, Tweedie's formula) is

    E[x0 | x] = sum_k r_k(x) (mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k)),

with ``r_k`` the posterior component responsibilities. Samplers, guidance
and likelihoods can be checked against it with no training at all.
"""

from __future__ import annotations

import math

import torch


class GaussianMixture:
    """Diagonal Gaussian mixture: ``weights (K,)``, ``means (K, D)``, ``stds (K, D)``.

    Calling the object is the exact denoiser ``D(x, sigma) -> E[x0 | x]`` for
    ``x`` of shape ``(B, D)`` or ``(B, *shape)`` with ``prod(shape) == D``."""

    def __init__(self, weights, means, stds):
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.stds = torch.as_tensor(stds, dtype=torch.float64).expand_as(self.means).clone()
        if self.weights.ndim != 1 or self.means.ndim != 2 or self.means.shape[0] != self.weights.shape[0]:
            raise ValueError("expected weights (K,), means (K, D), stds broadcastable to (K, D)")
        if (self.weights <= 0).any() or (self.stds <= 0).any():
            raise ValueError("weights and stds must be positive")
        self.weights = self.weights / self.weights.sum()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    def to(self, device) -> "GaussianMixture":
        out = GaussianMixture.__new__(GaussianMixture)
        out.weights, out.means, out.stds = (t.to(device) for t in (self.weights, self.means, self.stds))
        return out

    # -- sampling and moments

    def sample(self, n: int, generator: torch.Generator | None = None, return_labels: bool = False):
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = self.means[k] + self.stds[k] * z
        return (x, k) if return_labels else x

    def mean(self) -> torch.Tensor:
        return self.weights @ self.means

    def covariance(self) -> torch.Tensor:
        mu = self.mean()
        second = torch.einsum("k,kd,ke->de", self.weights, self.means, self.means) + torch.diag(self.weights @ self.stds**2)
        return second - torch.outer(mu, mu)

    # -- the noisy marginal p_sigma and its denoiser

    def _component_logp(self, x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log w_k + log N(x; mu_k, s_k^2 + sigma^2): (B, K); and the variances (B, K, D)."""
        var = self.stds[None] ** 2 + sigma.reshape(-1, 1, 1) ** 2  # (B, K, D)
        diff = x[:, None, :] - self.means[None]  # (B, K, D)
        logp = -0.5 * ((diff**2 / var) + var.log() + math.log(2 * math.pi)).sum(-1)
        return logp + self.weights.log()[None], var

    def _flat(self, x, sigma):
        xf = x.reshape(x.shape[0], -1).to(self.means.dtype)
        if xf.shape[1] != self.dim:
            raise ValueError(f"x has {xf.shape[1]} features per example, the mixture has {self.dim}")
        sigma = torch.as_tensor(sigma, dtype=self.means.dtype, device=xf.device)
        return xf, sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma

    def log_prob(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        """log p_sigma(x), shape (B,)."""
        xf, sigma = self._flat(x, sigma)
        return torch.logsumexp(self._component_logp(xf, sigma)[0], dim=1)

    def responsibilities(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        xf, sigma = self._flat(x, sigma)
        return torch.softmax(self._component_logp(xf, sigma)[0], dim=1)

    def denoise(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        """E[x0 | x_sigma = x], shaped and typed like ``x``."""
        xf, sigma = self._flat(x, sigma)
        logp, var = self._component_logp(xf, sigma)
        resp = torch.softmax(logp, dim=1)  # (B, K)
        per_comp = self.means[None] + (self.stds[None] ** 2 / var) * (xf[:, None, :] - self.means[None])  # (B, K, D)
        return torch.einsum("bk,bkd->bd", resp, per_comp).reshape(x.shape).to(x.dtype)

    __call__ = denoise

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """grad_x log p_sigma(x) = (E[x0|x] - x) / sigma^2."""
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, *([1] * (x.ndim - 1)))
        return (self.denoise(x, sigma) - x) / s**2


def example_mixture(dim: int = 2, num_components: int = 4, seed: int = 0, std_range=(0.05, 0.3)) -> GaussianMixture:
    """A reproducible, well-separated mixture in ``dim`` dimensions with unequal weights."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(num_components, dim, generator=g, dtype=torch.float64)
    means = means / means.norm(dim=1, keepdim=True).clamp_min(1e-8) * (1.0 + torch.rand(num_components, 1, generator=g, dtype=torch.float64))
    lo, hi = std_range
    stds = lo + (hi - lo) * torch.rand(num_components, dim, generator=g, dtype=torch.float64)
    weights = 0.5 + torch.rand(num_components, generator=g, dtype=torch.float64)
    return GaussianMixture(weights, means, stds)
