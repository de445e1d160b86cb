"""Denoising losses, one value per example.

With ``x = x0 + sigma n`` every loss here is a weighted denoising score
matching objective (Vincent 2011; Song & Ermon 2019)

    L(x0, sigma) = lambda(sigma) * mean ||D(x, sigma) - x0||^2,

computed in the backbone's output space (error ``c_out^2 |F - F_target|^2``)
so the common cases are numerically exact. ``lambda`` is a weighting:

=================  ===========================  ==============================
weighting          lambda(sigma)                equals
=================  ===========================  ==============================
uniform            1                            x0 MSE
snr                1/sigma^2                    eps MSE: DDPM's L_simple
snr_plus_one       1 + 1/sigma^2                v MSE (Salimans & Ho 2022)
min_snr(gamma)     min(1/sigma^2, gamma)        Hang et al. 2023, Eq. 9
edm(sigma_data)    (s^2+sd^2)/(s sd)^2          Karras et al. 2022, Table 1
=================  ===========================  ==============================
"""

from __future__ import annotations

from functools import partial

import torch

from .precond import Precond
from .utils import append_dims, mean_flat, randn_like


def uniform(sigma: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(sigma)


def snr(sigma: torch.Tensor) -> torch.Tensor:
    return sigma**-2


def snr_plus_one(sigma: torch.Tensor) -> torch.Tensor:
    return 1.0 + sigma**-2


def _min_snr(sigma: torch.Tensor, gamma: float) -> torch.Tensor:
    return (sigma**-2).clamp(max=gamma)


def min_snr(gamma: float = 5.0):
    """min-SNR-gamma weighting (Hang et al. 2023), as a function of sigma."""
    return partial(_min_snr, gamma=gamma)


def _edm(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm(sigma_data: float = 0.5):
    """EDM weighting lambda = 1 / c_out^2 (Karras et al. 2022, Table 1)."""
    return partial(_edm, sigma_data=sigma_data)


WEIGHTINGS = {"uniform": uniform, "snr": snr, "snr_plus_one": snr_plus_one, "min_snr": min_snr(), "edm": edm()}


def denoising_loss(
    model: Precond,
    x0: torch.Tensor,
    sigma: torch.Tensor,
    *,
    weighting=snr,
    noise: torch.Tensor | None = None,
    cond=None,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Weighted denoising loss for each example, shape (B,).

    ``sigma`` is (B,); ``mask`` (broadcastable to x0, 1 = real element) restricts
    the mean to unpadded elements."""
    if sigma.shape != (x0.shape[0],):
        raise ValueError(f"sigma must have shape ({x0.shape[0]},), got {tuple(sigma.shape)}")
    sigma = sigma.to(x0.dtype)
    noise = randn_like(x0, generator) if noise is None else noise
    x = x0 + append_dims(sigma, x0.ndim) * noise
    out, c_skip, c_out = model.raw(x, sigma, cond)
    target = (x0 - c_skip * x) / c_out  # (B, ...) what F should output
    err = mean_flat((out.float() - target.float()) ** 2, mask)
    return weighting(sigma).float() * c_out.reshape(-1).float() ** 2 * err


def ddpm_simple_loss(model: Precond, x0, sigma, **kwargs) -> torch.Tensor:
    """DDPM's L_simple (Ho et al. 2020, Eq. 14): the eps MSE, whatever the parametrisation."""
    return denoising_loss(model, x0, sigma, weighting=snr, **kwargs)
