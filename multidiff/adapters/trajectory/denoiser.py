"""The trajectory denoiser, in the manner of Diffuser (Janner et al. 2022).

==========  ================================================================
``H``       the horizon: time steps in one plan
``S, A``    observation and action sizes; ``D = S + A`` features per step
``x``       a trajectory in model space ``(B, H, D)``: rows ``[s_t, a_t]``,
            every feature normalised on its own (:class:`~.normalizer.Normalizer`)
``known``   model-space values fixed while sampling, where ``mask`` is 1
``V``       a value model ``V(x_sigma, sigma) -> (B,)``: the normalised
            discounted return of a noisy trajectory
==========  ================================================================

The denoiser is Diffuser's temporal U-Net (:class:`~multidiff.backbones.UNet1D`),
which convolves along time with the ``D`` features as channels, so the saved
model works on ``(B, D, H)``; :class:`TrajectoryDenoiser` turns it into a
denoiser of ``(B, H, D)``, the layout every function here uses.

Conditioning is inpainting through the core's ``Inpaint`` wrapper, so every
sampler takes it and keeps the known entries exactly: the current observation
fills step 0 and, for goal reaching, the goal fills the goal features of step
``H - 1`` (with the velocity features zero: the plan ends at rest on the goal,
as Diffuser's Maze2D plans did). Diffuser trained its denoiser unconditionally
and relied on the replacement alone; with few sampling steps that left plans
that ignore their start and jump to it (measured: the first planned step ~2 m
from the start in U-Maze after 500 training steps). A *conditioned* model (the
recipes' default) also reads the ``K`` known values as ``K`` extra input
channels repeated along time (:func:`with_condition`), trained on random windows
whose own first step and last position are the condition (:class:`WindowLoss`),
so it learns ``p(plan | start, goal)``; the replacement still makes the
constraint exact. Value guidance is the core's ``GradientGuidance`` with a value
model trained on noisy windows (:mod:`.networks`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ...backbones import UNet1DConfig
from ...core.guidance import GradientGuidance
from ...core.inpainting import sample_inpaint
from ...core.losses import denoising_loss
from ...core.samplers import DEFAULT_METHOD
from .normalizer import Normalizer

# UNet1D sizes for trajectories (channels per level; the horizon must divide by 2**(levels - 1))
TRAJECTORY_PRESETS: dict[str, dict] = {
    "tiny": dict(base_channels=16, channel_mults=(1, 2), num_res_blocks=1),
    "small": dict(base_channels=32, channel_mults=(1, 2, 4), num_res_blocks=1),
    # Diffuser's Maze2D U-Net: dim 32, dim_mults (1, 4, 8)
    "diffuser": dict(base_channels=32, channel_mults=(1, 4, 8), num_res_blocks=2),
}

def backbone_config(dim: int, horizon: int, preset: str = "small", **overrides) -> UNet1DConfig:
    """Diffuser's temporal U-Net for ``D = dim`` features over ``horizon`` steps (a :data:`TRAJECTORY_PRESETS`
    size; ``overrides`` replace its fields)."""
    if preset not in TRAJECTORY_PRESETS:
        raise ValueError(f"unknown trajectory preset {preset!r}; choose one of: {', '.join(TRAJECTORY_PRESETS)}")
    return UNet1DConfig(**{**TRAJECTORY_PRESETS[preset], "in_channels": dim, "length": horizon, **overrides})


class TrajectoryDenoiser(nn.Module):
    """A denoiser of ``(B, H, D)`` trajectories from one of ``(B, D, H)`` (the temporal U-Net's
    channels-first layout, which the saved model keeps)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @property
    def schedule(self):
        return self.model.schedule

    def forward(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        x_t = x.transpose(1, 2)  # (B, D, H)
        denoised = self.model(x_t, sigma) if cond is None else self.model(x_t, sigma, cond)
        return denoised.transpose(1, 2)  # (B, H, D)


def condition_mask(horizon: int, dim: int, obs_dim: int, *, goal_dims=(), rest_dims=()) -> torch.Tensor:
    """``(H, D)`` float, 1 at the entries a plan is conditioned on: every observation feature of
    step 0 and, at step ``H - 1``, the features ``goal_dims`` and ``rest_dims``."""
    mask = torch.zeros(horizon, dim)
    mask[0, :obs_dim] = 1
    mask[-1, list(goal_dims) + list(rest_dims)] = 1
    return mask


def with_condition(model: nn.Module, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor,
                   timeline: torch.Tensor | None = None) -> torch.Tensor:
    """The network input of a conditioned model: ``x (B, D, H)`` followed by ``K`` channels that
    repeat the known values ``cond (B, K)`` along time (and, given ``timeline (B, H)``, one channel
    that varies along time: the arrival indicator of :mod:`.arrival`), divided by the
    preconditioning's ``c_in`` so that the network reads them at their own scale at every noise
    level."""
    c_in = model.coefficients(sigma)[2]  # (B,)
    channels = cond[:, :, None].expand(-1, -1, x.shape[2])  # (B, K, H)
    if timeline is not None:
        channels = torch.cat([channels, timeline[:, None, :].to(channels)], dim=1)  # (B, K + 1, H)
    return torch.cat([x, (channels / c_in[:, None, None]).to(x)], dim=1)  # (B, D + K [+ 1], H)


class WindowLoss:
    """The training engine's ``loss_fn`` for windows cut from one array of normalised steps:
    a batch is ``{"start": (B,) long}`` (first steps, e.g. from ``window_starts``), so the
    ``M x H`` window copies never exist in memory.

    With ``known_mask (H, D)`` (:func:`condition_mask`) the denoiser learns to plan from a
    start (and goal): the ``K`` values of each window under the mask come in as extra input
    channels (:func:`with_condition`; the U-Net then has ``D + K`` channels, and its extra
    outputs are ignored). Without it, plain unconditional training (Diffuser's)."""

    def __init__(self, rows: torch.Tensor, horizon: int, weighting: Callable,
                 known_mask: torch.Tensor | None = None):
        self.rows, self.horizon, self.weighting = rows, int(horizon), weighting
        self.known_mask = known_mask
        self._on: dict = {}

    def windows(self, start: torch.Tensor) -> torch.Tensor:
        """``(B, H, D)`` windows starting at ``start``."""
        if start.device not in self._on:
            self._on[start.device] = self.rows.to(start.device)
        offsets = torch.arange(self.horizon, device=start.device)
        return self._on[start.device][start[:, None] + offsets]  # (B, H, D)

    def __call__(self, model: nn.Module, batch: dict, generator: torch.Generator) -> torch.Tensor:
        windows = self.windows(batch["start"])  # (B, H, D)
        x0 = windows.transpose(1, 2)  # (B, D, H): the U-Net's layout
        sigma = model.schedule.sample_sigmas(x0.shape[0], generator=generator, device=x0.device).to(x0.dtype)
        if self.known_mask is None:
            return denoising_loss(model, x0, sigma, weighting=self.weighting, generator=generator)
        cond = windows[:, self.known_mask.to(x0.device) > 0]  # (B, K)
        return self.conditioned_loss(model, x0, sigma, cond, None, generator)

    def conditioned_loss(self, model: nn.Module, x0: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor,
                         timeline: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        """The weighted denoising loss of ``x0 (B, D, H)`` at ``sigma`` for a network that reads
        ``cond`` (and ``timeline``) as extra channels (:func:`with_condition`; its extra outputs
        are ignored)."""
        noise = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0)
        x = x0 + sigma[:, None, None] * noise
        out, c_skip, c_out = model.raw(with_condition(model, x, sigma, cond, timeline), sigma)
        dim = x0.shape[1]
        target = (x0 - c_skip * x) / c_out  # what the network should output in the trajectory channels
        err = ((out[:, :dim].float() - target.float()) ** 2).flatten(1).mean(1)
        return self.weighting(sigma).float() * c_out.reshape(-1).float() ** 2 * err


class ConditionedDenoiser(nn.Module):
    """The ``(B, H, D)`` denoiser of a model trained with a ``known_mask``, given the known values
    ``cond (B, K)`` (``known[:, mask > 0]`` of :func:`constraints`) and, for a model trained on
    arrival steps (:mod:`.arrival`), their ``timeline (B, H)``."""

    def __init__(self, model: nn.Module, cond: torch.Tensor, timeline: torch.Tensor | None = None):
        super().__init__()
        self.model, self.cond, self.timeline = model, cond, timeline

    @property
    def schedule(self):
        return self.model.schedule

    def forward(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        x_t = x.transpose(1, 2)  # (B, D, H)
        denoised = self.model(with_condition(self.model, x_t, sigma, self.cond.to(x), self.timeline), sigma)
        return denoised[:, :x_t.shape[1]].transpose(1, 2)  # (B, H, D)


def constraints(normalizer: Normalizer, horizon: int, obs_dim: int, first_obs: torch.Tensor,
                goal: torch.Tensor | None = None, *, goal_dims=(), rest_dims=()) -> tuple[torch.Tensor, torch.Tensor]:
    """``known, mask (B, H, D)`` in model space: observation ``first_obs (B, S)`` at step 0 and, when
    ``goal (B, G)`` is given, its values at the features ``goal_dims`` of step ``H - 1``, with the
    features ``rest_dims`` (velocities) zero there (the mask is :func:`condition_mask`'s)."""
    if first_obs.ndim != 2 or first_obs.shape[1] != obs_dim:
        raise ValueError(f"first_obs must be (B, {obs_dim}), got {tuple(first_obs.shape)}")
    batch, dim = first_obs.shape[0], normalizer.dim
    known = torch.zeros(batch, horizon, dim, dtype=first_obs.dtype, device=first_obs.device)
    known[:, 0, :obs_dim] = normalizer.encode(first_obs, range(obs_dim))
    if goal is None:
        goal_dims, rest_dims = [], []
    else:
        goal_dims, rest_dims = list(goal_dims), list(rest_dims)
        if goal.ndim != 2 or goal.shape != (batch, len(goal_dims)):
            raise ValueError(f"goal must be (B, {len(goal_dims)}) for goal_dims {goal_dims}, got {tuple(goal.shape)}")
        known[:, -1, goal_dims] = normalizer.encode(goal, goal_dims)
        if rest_dims:
            known[:, -1, rest_dims] = normalizer.encode(torch.zeros(batch, len(rest_dims)).to(goal), rest_dims)
    mask = condition_mask(horizon, dim, obs_dim, goal_dims=goal_dims, rest_dims=rest_dims)
    return known, mask.to(known).expand(batch, -1, -1).clone()


def sample_plans(denoiser, known: torch.Tensor, mask: torch.Tensor, sigmas: torch.Tensor, *,
                 method: str = DEFAULT_METHOD, generator: torch.Generator | None = None, value=None,
                 guidance_scale: float = 0.0, callback=None, start: torch.Tensor | None = None,
                 guidance_sigma_max: float = 0.0) -> torch.Tensor:
    """Trajectories ``(B, H, D)`` with ``known`` kept exactly where ``mask`` is 1, sampled by
    ``method`` on ``denoiser`` (of ``(B, H, D)``); with a ``value`` model and ``guidance_scale > 0``
    the denoiser is first steered up the value's gradient (``D + scale sigma^2 grad V``); ``start``
    warm-starts from earlier plans (``sigmas`` then the tail of a grid, see ``sample_inpaint``)."""
    options = {} if callback is None else {"callback": callback}
    if start is not None:
        options["start"] = start
    guided = value_guided(denoiser, value, guidance_scale, guidance_sigma_max)
    return sample_inpaint(guided, known, mask, sigmas, method=method,
                          generator=generator, **options)


def value_guided(denoiser, value, guidance_scale: float, sigma_max: float = 0.0):
    """``denoiser`` steered up the gradient of the noisy-plan ``value`` model (``D + scale sigma^2
    grad V``), at every noise level or, with ``sigma_max > 0``, only where ``sigma <= sigma_max``;
    unchanged without a value model or with ``guidance_scale <= 0``."""
    if value is None or guidance_scale <= 0:
        return denoiser
    guided = GradientGuidance(denoiser, lambda x, sigma, cond=None: value(x, sigma), guidance_scale, on="x")
    return guided if sigma_max <= 0 else SigmaWindow(guided, denoiser, sigma_max)


class SigmaWindow:
    """``inside`` where every draw's sigma is at most ``sigma_max``, else ``outside`` (guidance
    applied only at the low noise levels, where the plan's details are settled)."""

    def __init__(self, inside, outside, sigma_max: float):
        self.inside, self.outside, self.sigma_max = inside, outside, float(sigma_max)

    def __call__(self, x, sigma, cond=None):
        low = float(torch.as_tensor(sigma).max()) <= self.sigma_max
        chosen = self.inside if low else self.outside
        return chosen(x, sigma) if cond is None else chosen(x, sigma, cond)


class CallCounter:
    """A denoiser that counts its calls (the network evaluations of a plan)."""

    def __init__(self, denoiser):
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x, sigma, cond=None):
        self.calls += 1
        return self.denoiser(x, sigma) if cond is None else self.denoiser(x, sigma, cond)


__all__ = ["CallCounter", "ConditionedDenoiser", "TRAJECTORY_PRESETS", "TrajectoryDenoiser", "WindowLoss",
           "backbone_config", "condition_mask", "constraints", "sample_plans", "value_guided", "with_condition"]
