"""Noise schedules, all expressed in sigma.

Notation (variance-exploding form, used everywhere in the core):

======================  =====================================================
``x = x0 + sigma * n``  the noisy sample, ``n ~ N(0, I)``
``alpha_bar``           VP signal fraction: ``x_vp = sqrt(alpha_bar) x0 + sqrt(1-alpha_bar) n``
``x_vp``                ``x / sqrt(1 + sigma^2)`` (the conversion lives in :mod:`.sigmas` only)
``logsnr``              ``log(alpha_bar / (1 - alpha_bar)) = -2 log sigma``
``t``                   a schedule's own clock in [0, 1] (0 = data, 1 = noise)
``c_noise``             what the backbone is conditioned on (e.g. DDPM timestep)
======================  =====================================================

Every schedule gives ``sigmas(steps, spacing)`` for sampling (float64,
strictly decreasing, last element exactly 0) and ``sample_sigmas(n)`` for
training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .sigmas import (JUMP_DECAY, JUMP_FADE_STEPS, JUMP_SIGMA_HI, JUMP_SIGMA_LO, alpha_bar_to_sigma, check_sigmas,
                     flow_t_to_sigma, karras_sigmas, logsnr_jump_sigmas, logsnr_sigmas, logsnr_to_sigma,
                     sigma_to_alpha_bar, sigma_to_flow_t, sigma_to_logsnr, vp_scale, _append_zero, _check_steps)


# ---------------------------------------------------------------- base class


class Schedule:
    """A noise schedule in sigma. Subclasses define ``sigma(t)``, ``t(sigma)``,
    ``sample_sigmas`` and the backbone's ``c_noise``."""

    default_spacing = "karras"
    spacings = ("uniform", "karras", "logsnr", "logsnr_jump")
    sigma_data = 1.0  # the data scale spacings assume (data normalised to about unit variance)

    sigma_min: float
    sigma_max: float

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def t(self, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def c_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        """The backbone's noise-conditioning input (default: EDM's ``log(sigma) / 4``)."""
        return sigma.log() / 4

    def input_scale(self, sigma: torch.Tensor) -> torch.Tensor:
        """Scale the backbone sees its input at (VP: ``1/sqrt(1+sigma^2)``)."""
        return vp_scale(sigma)

    def sample_sigmas(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        raise NotImplementedError

    def sigmas(self, steps: int, spacing: str | None = None, rho: float = 7.0, *,
               sigma_data: float | None = None) -> torch.Tensor:
        """Sampling sigmas: ``steps + 1`` float64 values, decreasing, last exactly 0.
        ``sigma_data`` (default: the schedule's) is the data scale ``logsnr_jump`` places its band by."""
        _check_steps(steps)
        spacing = spacing or self.default_spacing
        if spacing == "karras":
            out = karras_sigmas(steps, self.sigma_min, self.sigma_max, rho)
        elif spacing == "logsnr":
            out = logsnr_sigmas(steps, self.sigma_min, self.sigma_max)
        elif spacing == "logsnr_jump":
            out = logsnr_jump_sigmas(steps, self.sigma_min, self.sigma_max,
                                     self.sigma_data if sigma_data is None else sigma_data, rho=rho)
        elif spacing == "uniform":
            t_hi = float(self.t(torch.tensor(self.sigma_max, dtype=torch.float64)))
            t_lo = float(self.t(torch.tensor(self.sigma_min, dtype=torch.float64)))
            out = _append_zero(self.sigma(torch.linspace(t_hi, t_lo, steps, dtype=torch.float64)))
        else:
            raise ValueError(f"unknown spacing {spacing!r} for {type(self).__name__}; choose one of {self.spacings}")
        check_sigmas(out)
        return out

    def config(self) -> dict:
        """JSON-able description (the name and constructor arguments)."""
        return {"name": type(self).__name__, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}


def _uniform(n, generator, device):
    return torch.rand(n, generator=generator, dtype=torch.float64, device=getattr(generator, "device", None)).to(device)


# ---------------------------------------------------------------- discrete VP


class DiscreteVP(Schedule):
    """A DDPM-style schedule of ``N`` discrete steps (Ho et al. 2020) from its
    ``alpha_bar`` (float64, decreasing). Timestep ``i`` has ``sigma_i``; between
    integers, log sigma is interpolated linearly, so ``c_noise`` is the
    (fractional) DDPM timestep the backbone was trained on."""

    default_spacing = "trailing"
    spacings = ("uniform", "linspace", "leading", "trailing", "karras", "logsnr", "logsnr_jump")

    def __init__(self, alpha_bar: torch.Tensor, sigma_data: float = 1.0):
        self.sigma_data = float(sigma_data)
        alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float64)
        if alpha_bar.ndim != 1 or alpha_bar.numel() < 2:
            raise ValueError("alpha_bar must be 1-D with at least 2 entries")
        if not ((alpha_bar > 0) & (alpha_bar < 1)).all() or not (alpha_bar[1:] < alpha_bar[:-1]).all():
            raise ValueError("alpha_bar must lie in (0, 1) and strictly decrease")
        self._alpha_bar = alpha_bar
        self._log_sigmas = alpha_bar_to_sigma(alpha_bar).log()
        self.num_train_steps = alpha_bar.numel()
        self.sigma_min = float(self._log_sigmas[0].exp())
        self.sigma_max = float(self._log_sigmas[-1].exp())

    @property
    def alpha_bar(self) -> torch.Tensor:
        return self._alpha_bar

    @property
    def train_sigmas(self) -> torch.Tensor:
        """sigma at each integer timestep, shape (N,), increasing."""
        return self._log_sigmas.exp()

    @property
    def betas(self) -> torch.Tensor:
        prev = torch.cat([self._alpha_bar.new_ones(1), self._alpha_bar[:-1]])
        return 1.0 - self._alpha_bar / prev

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timestep in [0, N-1] of ``sigma`` (log-sigma interpolation)."""
        log_sigma = torch.as_tensor(sigma, dtype=torch.float64).log().clamp(self._log_sigmas[0], self._log_sigmas[-1])
        idx = torch.searchsorted(self._log_sigmas, log_sigma.contiguous()).clamp(1, self.num_train_steps - 1)
        lo, hi = self._log_sigmas[idx - 1], self._log_sigmas[idx]
        frac = (log_sigma - lo) / (hi - lo)
        return idx - 1 + frac

    def sigma_at(self, timestep: torch.Tensor) -> torch.Tensor:
        """sigma at a (fractional) timestep in [0, N-1]."""
        timestep = torch.as_tensor(timestep, dtype=torch.float64).clamp(0, self.num_train_steps - 1)
        lo = timestep.floor().long().clamp(max=self.num_train_steps - 2)
        frac = timestep - lo
        return ((1 - frac) * self._log_sigmas[lo] + frac * self._log_sigmas[lo + 1]).exp()

    def t(self, sigma):
        return self.timestep(sigma) / (self.num_train_steps - 1)

    def sigma(self, t):
        return self.sigma_at(torch.as_tensor(t, dtype=torch.float64) * (self.num_train_steps - 1))

    def c_noise(self, sigma):
        return self.timestep(sigma.detach().double()).to(sigma.dtype)

    def sample_sigmas(self, n, generator=None, device=None):
        """Uniform integer timesteps, as in DDPM training."""
        idx = torch.randint(0, self.num_train_steps, (n,), generator=generator, device=getattr(generator, "device", None))
        return self.train_sigmas[idx.cpu()].to(device)

    def sigmas(self, steps, spacing=None, rho=7.0, *, sigma_data=None):
        _check_steps(steps)
        spacing = spacing or self.default_spacing
        n = self.num_train_steps
        if spacing in ("leading", "trailing", "linspace"):
            if steps > n:
                raise ValueError(f"{spacing!r} spacing needs steps <= num_train_steps ({n}), got {steps}")
            if spacing == "leading":  # DDIM (Song et al. 2021): 0, k, 2k, ...
                ts = torch.arange(steps, dtype=torch.float64) * (n // steps)
            elif spacing == "trailing":  # Lin et al. 2023, Table 2: always starts at N-1
                ts = torch.round(torch.arange(n, 0, -n / steps, dtype=torch.float64)) - 1
            else:
                ts = torch.round(torch.linspace(0, n - 1, steps, dtype=torch.float64))
            ts = torch.sort(ts, descending=True).values
            out = _append_zero(self.sigma_at(ts))
            check_sigmas(out)
            return out
        return super().sigmas(steps, spacing, rho, sigma_data=sigma_data)

    def config(self):
        return {"name": type(self).__name__, "alpha_bar": self._alpha_bar.tolist(), **self._sigma_data_config()}

    def _sigma_data_config(self) -> dict:
        """``sigma_data`` for the saved config when it is not the default (older configs lack it)."""
        return {} if self.sigma_data == 1.0 else {"sigma_data": self.sigma_data}


def betas_for_alpha_bar(alpha_bar_fn, num_train_steps: int, max_beta: float = 0.999) -> torch.Tensor:
    """Discretise a continuous ``alpha_bar(t)`` into betas (Nichol & Dhariwal 2021, Eq. 17)."""
    t = torch.arange(num_train_steps + 1, dtype=torch.float64) / num_train_steps
    ab = alpha_bar_fn(t)
    return (1.0 - ab[1:] / ab[:-1]).clamp(max=max_beta)


def _alpha_bar_from_betas(betas: torch.Tensor) -> torch.Tensor:
    return torch.cumprod(1.0 - betas, dim=0)


class VPLinear(DiscreteVP):
    """DDPM's linear betas (Ho et al. 2020, Sec. 4)."""

    def __init__(self, beta_start: float = 1e-4, beta_end: float = 0.02, num_train_steps: int = 1000,
                 sigma_data: float = 1.0):
        betas = torch.linspace(beta_start, beta_end, num_train_steps, dtype=torch.float64)
        super().__init__(_alpha_bar_from_betas(betas), sigma_data)
        self.beta_start, self.beta_end = beta_start, beta_end

    def config(self):
        return {"name": "VPLinear", "beta_start": self.beta_start, "beta_end": self.beta_end,
                "num_train_steps": self.num_train_steps, **self._sigma_data_config()}


class VPCosine(DiscreteVP):
    """Cosine schedule (Nichol & Dhariwal 2021, Eq. 17) with ``s = 0.008``."""

    def __init__(self, num_train_steps: int = 1000, s: float = 0.008, sigma_data: float = 1.0):
        def f(t):
            return torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        super().__init__(_alpha_bar_from_betas(betas_for_alpha_bar(f, num_train_steps)), sigma_data)
        self.s = s

    def config(self):
        return {"name": "VPCosine", "num_train_steps": self.num_train_steps, "s": self.s, **self._sigma_data_config()}


class VPSqrt(DiscreteVP):
    """Diffusion-LM's sqrt schedule ``alpha_bar(t) = 1 - sqrt(t + s)`` (Li et al. 2022, Sec. 4.3),
    which adds noise quickly at first, suited to word embeddings."""

    def __init__(self, num_train_steps: int = 2000, s: float = 1e-4, sigma_data: float = 1.0):
        super().__init__(_alpha_bar_from_betas(betas_for_alpha_bar(lambda t: 1 - (t + s).sqrt(), num_train_steps)),
                         sigma_data)
        self.s = s

    def config(self):
        return {"name": "VPSqrt", "num_train_steps": self.num_train_steps, "s": self.s, **self._sigma_data_config()}


def rescale_zero_terminal_snr(schedule: DiscreteVP, terminal_alpha_bar: float | None = None) -> DiscreteVP:
    """Lin et al. 2023, Alg. 1: shift and scale sqrt(alpha_bar) so the last step has zero SNR.

    Exact zero SNR means sigma = inf, which no sampler can start from; the last
    alpha_bar is set to ``terminal_alpha_bar`` (default: the smaller of 2^-24
    and a quarter of the second-to-last value), so the start is pure noise to
    within float precision."""
    sqrt_ab = schedule.alpha_bar.sqrt()
    first, last = sqrt_ab[0], sqrt_ab[-1]
    ab = ((sqrt_ab - last) * first / (first - last)) ** 2
    ab[-1] = min(2.0**-24, ab[-2].item() / 4) if terminal_alpha_bar is None else terminal_alpha_bar
    if not ab[-1] < ab[-2]:
        raise ValueError(f"terminal_alpha_bar must be below the second-to-last rescaled alpha_bar ({ab[-2].item():.3g})")
    return DiscreteVP(ab, schedule.sigma_data)


# ---------------------------------------------------------------- continuous VE / flow


@dataclass
class EDM(Schedule):
    """Karras et al. 2022 (EDM): log-normal training sigmas (Table 1), rho-spaced sampling (Eq. 5)."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    sigma_data: float = 0.5
    p_mean: float = -1.2
    p_std: float = 1.2

    default_spacing = "karras"

    def sigma(self, t):
        inv = 1.0 / self.rho
        return (self.sigma_min**inv + torch.as_tensor(t, dtype=torch.float64) * (self.sigma_max**inv - self.sigma_min**inv)) ** self.rho

    def t(self, sigma):
        inv = 1.0 / self.rho
        return (torch.as_tensor(sigma, dtype=torch.float64) ** inv - self.sigma_min**inv) / (self.sigma_max**inv - self.sigma_min**inv)

    def input_scale(self, sigma):
        return 1.0 / (sigma**2 + self.sigma_data**2).sqrt()

    def sample_sigmas(self, n, generator=None, device=None):
        z = torch.randn(n, generator=generator, dtype=torch.float64, device=getattr(generator, "device", None))
        return (self.p_mean + self.p_std * z).exp().to(device)

    def sigmas(self, steps, spacing=None, rho=None, *, sigma_data=None):
        return super().sigmas(steps, spacing, self.rho if rho is None else rho, sigma_data=sigma_data)


@dataclass
class LogLinear(Schedule):
    """Geometric VE schedule (NCSN, Song & Ermon 2019; score-SDE VE, Song et al. 2021)."""

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    sigma_data: float = 1.0

    default_spacing = "logsnr"

    def sigma(self, t):
        t = torch.as_tensor(t, dtype=torch.float64)
        return self.sigma_min ** (1 - t) * self.sigma_max**t

    def t(self, sigma):
        return (torch.as_tensor(sigma, dtype=torch.float64).log() - math.log(self.sigma_min)) / math.log(self.sigma_max / self.sigma_min)

    def input_scale(self, sigma):
        return torch.ones_like(sigma)

    def sample_sigmas(self, n, generator=None, device=None):
        return self.sigma(_uniform(n, generator, None)).to(device)


@dataclass
class RectifiedFlow(Schedule):
    """Rectified flow / flow matching (Liu et al. 2023; Lipman et al. 2023): ``x_t = (1-t) x0 + t n``.

    ``shift`` > 1 moves time toward noise as in SD3 (Esser et al. 2024, Eq. 23).
    Sampling runs over ``t`` in [t_min, t_max]; t = 1 would be sigma = inf."""

    t_min: float = 1e-3
    t_max: float = 1.0 - 1e-3
    shift: float = 1.0
    sigma_data: float = 1.0

    default_spacing = "uniform"

    @property
    def sigma_min(self):
        return float(flow_t_to_sigma(torch.tensor(self.t_min, dtype=torch.float64)))

    @property
    def sigma_max(self):
        return float(flow_t_to_sigma(torch.tensor(self.t_max, dtype=torch.float64)))

    def _shift(self, u):
        return self.shift * u / (1 + (self.shift - 1) * u)

    def _unshift(self, t):
        return t / (self.shift - (self.shift - 1) * t)

    def sigma(self, t):
        return flow_t_to_sigma(torch.as_tensor(t, dtype=torch.float64))

    def t(self, sigma):
        return sigma_to_flow_t(torch.as_tensor(sigma, dtype=torch.float64))

    def c_noise(self, sigma):
        return 1000.0 * sigma_to_flow_t(sigma)

    def input_scale(self, sigma):
        return 1.0 / (1.0 + sigma)

    def sample_sigmas(self, n, generator=None, device=None):
        u = self.t_min + (self.t_max - self.t_min) * _uniform(n, generator, None)
        return self.sigma(self._shift(u)).to(device)

    def sigmas(self, steps, spacing=None, rho=7.0, *, sigma_data=None):
        spacing = spacing or self.default_spacing
        if spacing == "uniform":  # uniform in un-shifted time, then shifted
            _check_steps(steps)
            u = torch.linspace(self._unshift(torch.tensor(self.t_max, dtype=torch.float64)).item(),
                               self._unshift(torch.tensor(self.t_min, dtype=torch.float64)).item(), steps, dtype=torch.float64)
            out = _append_zero(self.sigma(self._shift(u)))
            check_sigmas(out)
            return out
        return super().sigmas(steps, spacing, rho, sigma_data=sigma_data)


SCHEDULES = {
    "vp_linear": VPLinear,
    "vp_cosine": VPCosine,
    "vp_sqrt": VPSqrt,
    "edm": EDM,
    "loglinear": LogLinear,
    "rectified_flow": RectifiedFlow,
}


def schedule_from_config(config: dict) -> Schedule:
    """Rebuild a schedule from :meth:`Schedule.config` output."""
    config = dict(config)
    name = config.pop("name", None)
    classes = {cls.__name__: cls for cls in (*SCHEDULES.values(), DiscreteVP)}
    if name not in classes:
        raise ValueError(f"unknown schedule {name!r}; known: {sorted(classes)}")
    if name == "DiscreteVP":
        return DiscreteVP(torch.tensor(config["alpha_bar"], dtype=torch.float64), config.get("sigma_data", 1.0))
    return classes[name](**config)


__all__ = ["DiscreteVP", "EDM", "JUMP_DECAY", "JUMP_FADE_STEPS", "JUMP_SIGMA_HI", "JUMP_SIGMA_LO", "LogLinear",
           "RectifiedFlow", "SCHEDULES", "Schedule", "VPCosine", "VPLinear", "VPSqrt", "alpha_bar_to_sigma",
           "betas_for_alpha_bar", "check_sigmas", "flow_t_to_sigma", "karras_sigmas", "logsnr_jump_sigmas",
           "logsnr_sigmas", "logsnr_to_sigma", "rescale_zero_terminal_snr", "schedule_from_config",
           "sigma_to_alpha_bar", "sigma_to_flow_t", "sigma_to_logsnr", "vp_scale"]
