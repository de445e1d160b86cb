"""Pieces every sampler shares: the probability-flow ODE derivative, the
ancestral noise split, EDM churn, and exact quadrature weights for multistep
methods. Step coefficients are computed in float64 from the sigmas; only
``x`` lives in the caller's dtype.

Notation: ``x = x0 + sigma n``; the probability-flow ODE (Song et al. 2021,
Eq. 13, in Karras et al. 2022's form, Eq. 4) is ``dx/dsigma = (x - D(x, sigma)) / sigma``.
``lambda = -log sigma`` is half the log-SNR.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..schedules import check_sigmas
from ..utils import batch_sigma, randn_like

Denoiser = Callable[..., torch.Tensor]


class Stepper:
    """Bookkeeping for one sampling run: sigma lookup, denoiser calls, the callback."""

    def __init__(self, denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, cond=None, callback=None):
        sigmas = torch.as_tensor(sigmas)
        check_sigmas(sigmas)
        if not torch.is_floating_point(x):
            raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
        self.denoiser, self.cond, self.callback = denoiser, cond, callback
        self.sigmas64 = sigmas.detach().to("cpu", torch.float64)
        self.sigma_list = self.sigmas64.tolist()
        self.x_sigmas = sigmas.to(device=x.device, dtype=x.dtype)
        self.nfe = 0

    def __len__(self) -> int:
        return len(self.sigma_list) - 1

    def denoise(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        s = batch_sigma(sigma, x)
        out = self.denoiser(x, s) if self.cond is None else self.denoiser(x, s, self.cond)
        if out.shape != x.shape:
            raise ValueError(f"denoiser returned shape {tuple(out.shape)} for input {tuple(x.shape)}")
        return out

    def report(self, i: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
        if self.callback is not None:
            self.callback({"i": i, "x": x, "sigma": self.sigma_list[i], "sigma_next": self.sigma_list[i + 1],
                           "denoised": denoised})


def to_d(x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE derivative dx/dsigma = (x - D) / sigma."""
    return (x - denoised) / sigma


def ancestral_split(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """Split a step sigma -> sigma_next into a deterministic move to ``sigma_down``
    plus fresh noise of std ``sigma_up`` (sigma_down^2 + sigma_up^2 = sigma_next^2).

    eta = 1 is the DDPM posterior variance; eta = 0 is deterministic (DDIM,
    Song et al. 2021a, Eq. 16 rewritten in sigma)."""
    if sigma_next == 0 or eta == 0:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return math.sqrt(sigma_next**2 - sigma_up**2), sigma_up


def churn(x: torch.Tensor, sigma: float, gamma: float, s_noise: float, generator) -> tuple[torch.Tensor, float]:
    """EDM Algorithm 2, lines 4-6: raise the noise level sigma -> sigma_hat = (1 + gamma) sigma."""
    if gamma <= 0:
        return x, sigma
    sigma_hat = sigma * (1.0 + gamma)
    x = x + randn_like(x, generator) * s_noise * math.sqrt(sigma_hat**2 - sigma**2)
    return x, sigma_hat


def lagrange_weights(nodes: list[float], integrals: list[float]) -> list[float]:
    """Weights w_m with sum_m w_m f(nodes[m]) = sum_j integrals[j] * c_j, where
    f(v) = sum_j c_j v^j is the polynomial interpolating f at the nodes.

    ``integrals[j]`` is the integral of the kernel times v^j over the step, so
    this is exact quadrature of the interpolant (any kernel, any step sizes).
    Solves the transposed Vandermonde system (at most 5x5) in Python floats:
    far cheaper per step than building tensors."""
    k = len(nodes)
    rows = [[nodes[m] ** j for m in range(k)] + [integrals[j]] for j in range(k)]  # V^T | moments
    for col in range(k):  # Gaussian elimination with partial pivoting
        pivot = max(range(col, k), key=lambda r: abs(rows[r][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(col + 1, k):
            f = rows[r][col] / rows[col][col]
            rows[r] = [a - f * b for a, b in zip(rows[r], rows[col])]
    w = [0.0] * k
    for r in reversed(range(k)):
        w[r] = (rows[r][k] - sum(rows[r][c] * w[c] for c in range(r + 1, k))) / rows[r][r]
    return w


def combine(x: torch.Tensor, scale: float, terms) -> torch.Tensor:
    """``scale * x + sum_m w_m t_m`` for ``terms = [(w_m, t_m), ...]``, in one
    new tensor with no temporaries (one pass per term)."""
    out = x * scale
    for w, term in terms:
        out.add_(term, alpha=w)
    return out


def adams_step(x: torch.Tensor, sigma: float, sigma_next: float, history) -> torch.Tensor:
    """One variable-step Adams-Bashforth step of dx/dsigma = eps_hat(sigma),
    ``history = [(sigma_m, eps_m), ...]`` newest first (sigma_0 = sigma):
    the exact integral over [sigma, sigma_next] of the interpolant in sigma."""
    nodes = [s_m - sigma for s_m, _ in history]
    w = lagrange_weights(nodes, poly_moments(0.0, sigma_next - sigma, len(nodes)))
    return combine(x, 1.0, ((w_m, e_m) for w_m, (_, e_m) in zip(w, history)))


def exp_moments(h: float, order: int) -> list[float]:
    """I_j = integral_0^h exp(-(h - v)) v^j dv for j < order (the exponential
    integrator kernel in lambda). Series for small h avoids cancellation."""
    if h < 0.3:
        # exp(-(h-v)) = sum_n (-(h-v))^n / n!;  integral_0^h (h-v)^n v^j dv = h^(n+j+1) n! j! / (n+j+1)!
        out = []
        for j in range(order):
            total, n = 0.0, 0
            while True:
                term = (-1) ** n * h ** (n + j + 1) * math.factorial(j) / math.factorial(n + j + 1)
                total += term
                n += 1
                if abs(term) < 1e-18 * abs(total) or n > 60:
                    break
            out.append(total)
        return out
    moments = [-math.expm1(-h)]
    for j in range(1, order):
        moments.append(h**j - j * moments[-1])  # integration by parts
    return moments


def poly_moments(a: float, b: float, order: int) -> list[float]:
    """integral_a^b v^j dv for j < order (the plain Adams kernel)."""
    return [(b ** (j + 1) - a ** (j + 1)) / (j + 1) for j in range(order)]
