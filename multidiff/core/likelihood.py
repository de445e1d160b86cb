"""Likelihoods: the DDPM variational bound, the exact probability-flow
ODE log-likelihood, and the denoising error per condition that ranks
conditions by how well each explains an example.

VLB (Ho et al. 2020, Eq. 5; Kingma et al. 2021, Eq. 13 for the per-step KL):
between two noise levels s < t of a discrete VP schedule the KL between
q(x_s | x_t, x0) and the model's posterior (x0 replaced by D(x_t)) is
``0.5 (SNR_s - SNR_t) |x0 - D(x_t)|^2``, with SNR = 1/sigma^2.

ODE (Song et al. 2021b, App. D.2; Chen et al. 2018): with u = log sigma the
flow is ``dx/du = x - D(x, sigma)``, whose divergence is ``dim - tr(dD/dx)``,
and ``log p_0(x0) = log p_T(x_T) + integral div du``. The trace is exact
(one backward pass per dimension) or Hutchinson's estimate E[v^T J v].

Diffusion classifier (Li et al. 2023, "Your Diffusion Model is Secretly a
Zero-Shot Classifier"; Clark & Jaini 2023): the denoising loss bounds
-log p(x0 | c) up to a constant shared by every c, so the condition whose
denoiser reconstructs a noised x0 best is the most likely one. Every
condition sees the same noise, which removes most of the estimate's variance
from the comparison.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .schedules import DiscreteVP
from .utils import batch_sigma


def _flat_sum(x):
    return x.reshape(x.shape[0], -1).sum(1)


def _gaussian_log_cdf_bin(x0, mean, std, bin_half_width):
    """log P(bin of x0) under N(mean, std^2); edge bins of [-1, 1] data extend to infinity."""
    normal = torch.distributions.Normal(mean, std)
    upper = torch.where(x0 > 1 - bin_half_width, torch.ones_like(x0), normal.cdf(x0 + bin_half_width))
    lower = torch.where(x0 < -1 + bin_half_width, torch.zeros_like(x0), normal.cdf(x0 - bin_half_width))
    return (upper - lower).clamp_min(1e-12).log()


@torch.no_grad()
def vlb_terms(denoiser, x0: torch.Tensor, schedule: DiscreteVP, *, num_timesteps: int | None = None,
              bits: int | None = None, cond=None, generator: torch.Generator | None = None) -> dict:
    """The DDPM variational bound per example, in nats: ``prior``, ``diffusion``
    (the sum over timesteps; estimated from ``num_timesteps`` random ones when
    given, unbiased) and ``decoder``; ``total`` is their sum.

    ``bits``: data are ``bits``-bit values scaled to [-1, 1] and the decoder is
    the discretised Gaussian of Ho et al. 2020 (Sec. 3.3); ``None``: continuous
    data and a Gaussian decoder density."""
    x0 = x0.double()
    sig = schedule.train_sigmas.to(x0.device)  # (N,) increasing
    n_steps = sig.numel()

    def denoise(x, s):
        s = batch_sigma(s, x)
        return denoiser(x, s) if cond is None else denoiser(x, s, cond)

    def noisy(s):
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=getattr(generator, "device", None))
        return x0 + s * noise.to(x0.device)

    # prior: KL(q(x_T | x0) || N(0, I)) in VP coordinates
    ab_T = schedule.alpha_bar[-1].item()
    prior = 0.5 * _flat_sum(ab_T * x0**2 + (1 - ab_T) - 1 - math.log(1 - ab_T))

    ts = torch.arange(1, n_steps) if num_timesteps is None else \
        torch.randperm(n_steps - 1, generator=generator)[:num_timesteps] + 1
    diffusion = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
    for t in ts.tolist():
        s_t, s_prev = sig[t].item(), sig[t - 1].item()
        err = _flat_sum((x0 - denoise(noisy(s_t), s_t)) ** 2)
        diffusion += 0.5 * (s_prev**-2 - s_t**-2) * err
    diffusion *= (n_steps - 1) / len(ts)

    s_0 = sig[0].item()
    mean = denoise(noisy(s_0), s_0)
    if bits is None:
        log_p = -0.5 * (((x0 - mean) / s_0) ** 2 + 2 * math.log(s_0) + math.log(2 * math.pi))
    else:
        log_p = _gaussian_log_cdf_bin(x0, mean, s_0, 1.0 / (2**bits - 1))
    decoder = -_flat_sum(log_p)
    return {"prior": prior, "diffusion": diffusion, "decoder": decoder, "total": prior + diffusion + decoder}


def bits_per_dim(nats: torch.Tensor, dim: int) -> torch.Tensor:
    """Convert a negative log-likelihood in nats per example to bits per dimension."""
    return nats / (dim * math.log(2))


def vlb_bits_per_dim(denoiser, x0, schedule: DiscreteVP, **kwargs) -> torch.Tensor:
    """The DDPM variational bound in bits per dimension, shape (B,)."""
    return bits_per_dim(vlb_terms(denoiser, x0, schedule, **kwargs)["total"], x0[0].numel())


def _divergence(denoiser, x, sigma, cond, probes):
    """(D(x), tr(dD/dx)) per example; probes: None for the exact trace, else Hutchinson vectors."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        s = batch_sigma(sigma, x)
        denoised = denoiser(x, s) if cond is None else denoiser(x, s, cond)
        if probes is None:
            flat = denoised.reshape(x.shape[0], -1)
            trace = sum(torch.autograd.grad(flat[:, i].sum(), x, retain_graph=True)[0].reshape(x.shape[0], -1)[:, i]
                        for i in range(flat.shape[1]))
        else:
            trace = 0.0
            for v in probes:
                (vjp,) = torch.autograd.grad(denoised, x, v, retain_graph=True)
                trace = trace + _flat_sum(vjp * v)
            trace = trace / len(probes)
    return denoised.detach(), trace.detach()


def ode_log_likelihood(denoiser, x0: torch.Tensor, *, sigma_min: float = 1e-3, sigma_max: float = 80.0,
                       steps: int = 100, exact_trace: bool = False, num_probes: int = 1, cond=None,
                       prior_log_prob: Callable | None = None, generator: torch.Generator | None = None):
    """log p(x0) per example (nats) through the probability-flow ODE, integrated
    with classical RK4 in u = log sigma from ``sigma_min`` to ``sigma_max``.

    The prior at ``sigma_max`` is N(0, sigma_max^2 I) unless ``prior_log_prob``
    is given. Hutchinson probes are Rademacher and fixed along the path."""
    dim = x0[0].numel()
    probes = None
    if not exact_trace:
        probes = [torch.randint(0, 2, x0.shape, generator=generator, dtype=x0.dtype,
                                device=getattr(generator, "device", None)).to(x0.device) * 2 - 1
                  for _ in range(num_probes)]

    def field(x, u):
        denoised, trace = _divergence(denoiser, x, math.exp(u), cond, probes)
        return x - denoised, dim - trace  # dx/du, divergence

    u0, u1 = math.log(sigma_min), math.log(sigma_max)
    h = (u1 - u0) / steps
    x = x0.detach().clone()
    delta = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
    for i in range(steps):
        u = u0 + i * h
        k1, d1 = field(x, u)
        k2, d2 = field(x + 0.5 * h * k1, u + 0.5 * h)
        k3, d3 = field(x + 0.5 * h * k2, u + 0.5 * h)
        k4, d4 = field(x + h * k3, u + h)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        delta = delta + h / 6 * (d1 + 2 * d2 + 2 * d3 + d4)
    if prior_log_prob is None:
        prior = -0.5 * _flat_sum(x**2) / sigma_max**2 - dim * (math.log(sigma_max) + 0.5 * math.log(2 * math.pi))
    else:
        prior = prior_log_prob(x)
    return prior + delta


@torch.no_grad()
def denoising_errors(denoiser, x0: torch.Tensor, conds: list, sigmas, *, weight: torch.Tensor | None = None,
                     draws: int = 1, generator: torch.Generator | None = None, level_weights=None) -> torch.Tensor:
    """The mean squared denoising error of ``x0 (B, ...)`` under each condition of ``conds`` (one
    ``cond`` per entry, each for the whole batch), over the noise levels ``sigmas`` and ``draws`` noise
    draws per level, the same noise for every condition: shape ``(B, len(conds))``, lower = the
    condition explains ``x0`` better. ``weight`` (broadcastable to ``x0``, e.g. a 0/1 mask of the
    entries that are known) restricts and weighs the error; an example with no weight at all is
    refused, as nothing would be compared. ``level_weights`` (one per sigma, default all 1) makes the
    result the weighted mean over the noise levels instead of the plain one."""
    if not conds:
        raise ValueError("denoising_errors needs at least one condition")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    weight = torch.ones_like(x0) if weight is None else torch.broadcast_to(weight.to(x0), x0.shape)
    total = _flat_sum(weight)
    if (total <= 0).any():
        raise ValueError("every example needs a positive weight somewhere (nothing to compare otherwise)")
    errors = torch.zeros(x0.shape[0], len(conds), dtype=torch.float64, device=x0.device)
    levels = [float(sigma) for sigma in sigmas]
    scales = [1.0] * len(levels) if level_weights is None else [float(w) for w in level_weights]
    if len(scales) != len(levels) or min(scales, default=1.0) < 0 or sum(scales) <= 0:
        raise ValueError(f"level_weights must be {len(levels)} non-negative numbers (one per sigma) with a positive "
                         f"sum, got {level_weights!r}")
    for sigma, scale in zip(levels, scales):
        for _ in range(draws):
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype,
                                device=getattr(generator, "device", None)).to(x0.device)
            noisy = x0 + sigma * noise
            s = batch_sigma(sigma, x0)
            for k, cond in enumerate(conds):
                denoised = denoiser(noisy, s) if cond is None else denoiser(noisy, s, cond)
                errors[:, k] += scale * (_flat_sum(weight * (denoised.to(x0.dtype) - x0) ** 2) / total).double()
    return (errors / (sum(scales) * draws)).to(x0.dtype)
