"""Preconditioning: wrap a backbone ``F(x_in, c_noise, cond)`` into a denoiser
``D(x, sigma, cond) -> x0_hat`` in the one form of Karras et al. 2022, Eq. 7:

    D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))

Each prediction type is a choice of (c_skip, c_out, c_in); ``c_noise`` comes
from the schedule. Samplers never see which one was used.

===========  =================================  ==============================
prediction   the backbone predicts               (c_skip, c_out)
===========  =================================  ==============================
eps          the noise ``n`` (Ho et al. 2020)    (1, -sigma)
x0           the clean data                      (0, 1)
v            ``a n - s x0`` (Salimans & Ho 2022) (1/(1+sigma^2), -sigma/sqrt(1+sigma^2))
flow         ``n - x0`` (rectified flow)         (1/(1+sigma), -sigma/(1+sigma))
edm          EDM's F (Karras et al. 2022, T. 1)  (sd^2/(sigma^2+sd^2), sigma sd/sqrt(sigma^2+sd^2))
categorical  logits over a codebook's rows       x0 = softmax(F) @ E (see CategoricalPrecond)
===========  =================================  ==============================
"""

from __future__ import annotations

import torch
from torch import nn

from .schedules import Schedule, vp_scale
from .utils import append_dims, batch_sigma


class Precond(nn.Module):
    """Base: subclasses give ``coefficients(sigma) -> (c_skip, c_out, c_in)``, each (B,)."""

    prediction = "?"

    def __init__(self, backbone: nn.Module, schedule: Schedule):
        super().__init__()
        self.backbone = backbone
        self.schedule = schedule

    def coefficients(self, sigma: torch.Tensor):
        raise NotImplementedError

    def options(self) -> dict:
        """Constructor options beyond (backbone, schedule), for saving: ``make_precond(prediction, b, s, **options)``."""
        return {}

    def raw(self, x: torch.Tensor, sigma, cond=None):
        """Run the backbone: returns ``(F, c_skip, c_out)`` with c's broadcast to x."""
        sigma = batch_sigma(sigma, x)
        c_skip, c_out, c_in = (append_dims(c, x.ndim) for c in self.coefficients(sigma))
        c_noise = self.schedule.c_noise(sigma)
        out = self.backbone(x * c_in, c_noise, cond) if cond is not None else self.backbone(x * c_in, c_noise)
        if out.shape != x.shape:
            raise ValueError(f"backbone returned shape {tuple(out.shape)}, expected {tuple(x.shape)}")
        return out.to(x.dtype), c_skip, c_out

    def forward(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        out, c_skip, c_out = self.raw(x, sigma, cond)
        return c_skip * x + c_out * out


class EpsPrecond(Precond):
    prediction = "eps"

    def coefficients(self, sigma):
        return torch.ones_like(sigma), -sigma, self.schedule.input_scale(sigma)


class X0Precond(Precond):
    prediction = "x0"

    def coefficients(self, sigma):
        return torch.zeros_like(sigma), torch.ones_like(sigma), self.schedule.input_scale(sigma)


class VPrecond(Precond):
    prediction = "v"

    def coefficients(self, sigma):
        a = vp_scale(sigma)
        return a**2, -sigma * a, a


class FlowPrecond(Precond):
    prediction = "flow"

    def coefficients(self, sigma):
        a = 1.0 / (1.0 + sigma)
        return a, -sigma * a, a


class EDMPrecond(Precond):
    prediction = "edm"

    def __init__(self, backbone, schedule, sigma_data: float | None = None):
        """``sigma_data`` defaults to the schedule's (EDM: 0.5), so one value serves both."""
        super().__init__(backbone, schedule)
        self.sigma_data = float(schedule.sigma_data if sigma_data is None else sigma_data)

    def options(self):
        return {"sigma_data": self.sigma_data}

    def coefficients(self, sigma):
        sd2 = self.sigma_data**2
        norm = (sigma**2 + sd2).sqrt()
        return sd2 / (sigma**2 + sd2), sigma * self.sigma_data / norm, 1.0 / norm


class CategoricalPrecond(Precond):
    """Data on a finite set of points per position (word embeddings, codebook vectors): the backbone
    gives, for each position, logits over the ``V`` rows of a codebook ``E (V, D)``, and the denoiser
    returns their posterior mean ``softmax(F) @ E``. That is the exact form of the ideal denoiser of
    such data, ``E[x0 | x] = sum_v p(x0_l = E_v | x) E_v`` per position, so the network only has to
    learn the posterior over the codebook (score interpolation, Dieleman et al. 2022, Sec. 3.2), and
    cross-entropy on the true rows trains it (:meth:`logits`).

    The codebook is the backbone's ``codebook`` parameter, its rows rescaled to norm ``sigma_data
    sqrt(D)`` (every coordinate of scale ``sigma_data``); inputs are scaled as EDM's, ``c_in = 1 /
    sqrt(sigma^2 + sigma_data^2)``. The last axis of x is the codebook's ``D``.

    ``self_condition=True`` (Chen et al. 2023, "Analog Bits"; CDCD): the backbone also reads an
    earlier x0 estimate ``previous`` (divided by ``sigma_data``; zeros when None) as ``D`` more
    input features per position (Transformer1D's ``extra_channels``). Training feeds it the
    model's own estimate at the same x half of the time (``multidiff.adapters.text.text_loss``);
    sampling feeds the last step's (:class:`multidiff.core.guidance.SelfConditioning`). With
    ``previous=None`` it is an ordinary denoiser (used for likelihoods)."""

    prediction = "categorical"

    def __init__(self, backbone, schedule, sigma_data: float | None = None, self_condition: bool = False):
        super().__init__(backbone, schedule)
        if not isinstance(getattr(backbone, "codebook", None), torch.Tensor):
            raise ValueError(f"categorical prediction needs a backbone with a codebook (V, D) parameter; "
                             f"{type(backbone).__name__} has none (Transformer1D: build it with vocab_size > 0)")
        self.sigma_data = float(schedule.sigma_data if sigma_data is None else sigma_data)
        self.self_condition = bool(self_condition)
        extra = getattr(getattr(backbone, "config", None), "extra_channels", 0)
        if self.self_condition and extra != backbone.codebook.shape[1]:
            raise ValueError(f"self-conditioning needs a backbone reading {backbone.codebook.shape[1]} extra input "
                             f"channels (the x0 estimate), this one reads {extra} (Transformer1D: extra_channels)")

    def options(self):
        return {"sigma_data": self.sigma_data, **({"self_condition": True} if self.self_condition else {})}

    def coefficients(self, sigma):
        return torch.zeros_like(sigma), torch.ones_like(sigma), 1.0 / (sigma**2 + self.sigma_data**2).sqrt()

    def raw(self, x, sigma, cond=None):
        raise ValueError("categorical prediction trains by cross-entropy on its logits (CategoricalPrecond.logits; "
                         "multidiff.adapters.text.text_loss), not by the weighted MSE of denoising_loss")

    def table(self) -> torch.Tensor:
        """The codebook ``E (V, D)`` in data space (rows of norm ``sigma_data sqrt(D)``)."""
        weight = self.backbone.codebook
        scale = self.sigma_data * weight.shape[1] ** 0.5
        return weight * (scale / weight.norm(dim=1, keepdim=True).clamp_min(1e-12))

    def logits(self, x: torch.Tensor, sigma, cond=None, previous: torch.Tensor | None = None) -> torch.Tensor:
        """The backbone's logits ``(..., V)`` over the codebook at each position of ``x (..., D)``
        (``previous``: an earlier x0 estimate, read only by a self-conditioned model)."""
        sigma = batch_sigma(sigma, x)
        c_in = append_dims(self.coefficients(sigma)[2], x.ndim)
        c_noise = self.schedule.c_noise(sigma)
        x_in = x * c_in
        if self.self_condition:
            if previous is not None and previous.shape != x.shape:
                raise ValueError(f"previous estimate of shape {tuple(previous.shape)} for x of {tuple(x.shape)}")
            prior = torch.zeros_like(x_in) if previous is None else previous.to(x_in) / self.sigma_data
            x_in = torch.cat([x_in, prior], dim=-1)
        out = self.backbone(x_in, c_noise, cond) if cond is not None else self.backbone(x_in, c_noise)
        if out.shape[:-1] != x.shape[:-1] or out.shape[-1] != self.backbone.codebook.shape[0]:
            raise ValueError(f"backbone returned shape {tuple(out.shape)}, expected {tuple(x.shape[:-1])} + "
                             f"({self.backbone.codebook.shape[0]},) logits over the codebook")
        return out

    def forward(self, x: torch.Tensor, sigma, cond=None, previous: torch.Tensor | None = None,
                allowed: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
        """The posterior mean ``softmax(F / temperature) @ E``; ``allowed`` (bool, broadcastable to
        ``(..., V)``): the posterior restricted to those rows at each position (the others get
        probability 0); ``temperature < 1`` sharpens each position's posterior toward its likeliest
        rows (1: the model's own posterior)."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        dtype = torch.promote_types(x.dtype, torch.float32)  # the softmax at least in float32
        logits = self.logits(x, sigma, cond, previous).to(dtype)
        if temperature != 1.0:
            logits = logits / temperature
        if allowed is not None:
            logits = logits.masked_fill(~allowed.to(logits.device), float("-inf"))
        return (torch.softmax(logits, dim=-1) @ self.table().to(dtype)).to(x.dtype)


PRECONDITIONERS = {cls.prediction: cls for cls in (EpsPrecond, X0Precond, VPrecond, FlowPrecond, EDMPrecond,
                                                   CategoricalPrecond)}


def make_precond(prediction: str, backbone: nn.Module, schedule: Schedule, **kwargs) -> Precond:
    """Build a preconditioner by name (for configs and the CLI)."""
    if prediction not in PRECONDITIONERS:
        raise ValueError(f"unknown prediction type {prediction!r}; choose one of {sorted(PRECONDITIONERS)}")
    return PRECONDITIONERS[prediction](backbone, schedule, **kwargs)
