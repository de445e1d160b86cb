"""Trajectories for planning by diffusion, in the manner of Diffuser (Janner et al. 2022).

==========  ================================================================
``H``       the horizon: time steps in one plan
``S, A``    observation and action sizes; ``D = S + A`` features per step
``x``       a trajectory in model space ``(B, H, D)``: rows ``[s_t, a_t]``,
            every feature normalised on its own (:class:`Normalizer`)
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
model trained on noisy windows; :class:`Planner` then samples several plans,
ranks them by value and executes the best.

A :class:`Planner` acts in a gymnasium env from the observations the env
returns (a dict with ``observation`` and ``desired_goal`` for goal envs such as
PointMaze, else an array), in one of three ways: ``tracking="pd"`` follows the
planned states with a PD law on position and velocity (Diffuser's Maze2D
controller; for point-mass envs whose actions push the position features),
``"inverse"`` takes the action a learned inverse dynamics model (Ajay et al.
2023) gives for the next planned state, ``"actions"`` executes the planned
actions. ``replan_every = K`` samples a new plan every K steps (receding
horizon); 0 plans once per goal.

gymnasium (and gymnasium-robotics for PointMaze) are imported only when an env
is made.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write_bytes, atomic_write_json
from ..backbones import UNet1D, UNet1DConfig
from ..core.guidance import GradientGuidance, Inpaint
from ..core.inpainting import sample_inpaint
from ..core.losses import denoising_loss
from ..core.samplers import DEFAULT_METHOD, SAMPLERS, default_sigmas

NORMALIZERS = ("limits", "gaussian")
TRACKING = ("pd", "actions", "inverse")
# UNet1D sizes for trajectories (channels per level; the horizon must divide by 2**(levels - 1))
TRAJECTORY_PRESETS: dict[str, dict] = {
    "tiny": dict(base_channels=16, channel_mults=(1, 2), num_res_blocks=1),
    "small": dict(base_channels=32, channel_mults=(1, 2, 4), num_res_blocks=1),
    # Diffuser's Maze2D U-Net: dim 32, dim_mults (1, 4, 8)
    "diffuser": dict(base_channels=32, channel_mults=(1, 4, 8), num_res_blocks=2),
}
VALUE_FILE, BC_FILE, INVERSE_FILE = "value_model", "bc_policy", "inverse_dynamics"


# ---------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class Normalizer:
    """Per-feature affine map ``z = (x - shift) / scale``: ``limits`` sends each feature's
    data range to [-1, 1] (Diffuser's LimitsNormalizer), ``gaussian`` to zero mean and unit
    variance. A feature constant in the data keeps scale 1."""

    kind: str
    shift: tuple[float, ...]
    scale: tuple[float, ...]

    def __post_init__(self):
        if self.kind not in NORMALIZERS:
            raise ValueError(f"unknown normalizer {self.kind!r}; choose one of: {', '.join(NORMALIZERS)}")
        shift, scale = tuple(float(v) for v in self.shift), tuple(float(v) for v in self.scale)
        if len(shift) != len(scale) or not shift:
            raise ValueError(f"a normalizer needs as many shifts as scales (>= 1), got {len(shift)} and {len(scale)}")
        if not all(math.isfinite(v) for v in shift) or not all(math.isfinite(v) and v > 0 for v in scale):
            raise ValueError("a normalizer's shifts must be finite and its scales finite and positive")
        object.__setattr__(self, "shift", shift)
        object.__setattr__(self, "scale", scale)

    @classmethod
    def fit(cls, rows, kind: str = "limits") -> "Normalizer":
        """Statistics of ``rows (N, D)`` (every step of the data)."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or len(rows) == 0:
            raise ValueError(f"fit a normalizer on rows of shape (N, D) with N >= 1, got {rows.shape}")
        if not np.isfinite(rows).all():
            raise ValueError("the data has NaN or infinite values; drop or repair those steps before training")
        if kind == "limits":
            low, high = rows.min(0), rows.max(0)
            shift, scale = (high + low) / 2, (high - low) / 2
        elif kind == "gaussian":
            shift, scale = rows.mean(0), rows.std(0)
        else:
            raise ValueError(f"unknown normalizer {kind!r}; choose one of: {', '.join(NORMALIZERS)}")
        constant = scale <= 1e-6 * np.maximum(1.0, np.abs(shift))
        return cls(kind, tuple(shift), tuple(np.where(constant, 1.0, scale)))

    @property
    def dim(self) -> int:
        return len(self.shift)

    def _stats(self, x, dims):
        shift, scale = np.array(self.shift), np.array(self.scale)
        if dims is not None:
            shift, scale = shift[list(dims)], scale[list(dims)]
        if isinstance(x, torch.Tensor):
            return torch.as_tensor(shift, dtype=x.dtype, device=x.device), torch.as_tensor(scale, dtype=x.dtype,
                                                                                           device=x.device)
        return shift, scale

    def _check(self, x, dims) -> None:
        width = self.dim if dims is None else len(dims)
        if x.shape[-1] != width:
            raise ValueError(f"expected {width} features in the last axis, got shape {tuple(x.shape)}")

    def encode(self, x, dims=None):
        """Environment units -> model space, along the last axis (all features, or those in ``dims``)."""
        self._check(x, dims)
        shift, scale = self._stats(x, dims)
        return (x - shift) / scale

    def decode(self, z, dims=None):
        """Model space -> environment units."""
        self._check(z, dims)
        shift, scale = self._stats(z, dims)
        return z * scale + shift

    def to_dict(self) -> dict:
        return {"kind": self.kind, "shift": list(self.shift), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, data: dict) -> "Normalizer":
        return cls(data["kind"], tuple(data["shift"]), tuple(data["scale"]))


def step_rows(dataset: dict) -> np.ndarray:
    """``(N, S + A)`` float32 rows ``[observation, action]`` of a dataset (load_offline_dataset's fields)."""
    rows = np.concatenate([np.asarray(dataset["observations"], np.float32),
                           np.asarray(dataset["actions"], np.float32)], axis=1)
    if not np.isfinite(rows).all():
        row = int(np.argwhere(~np.isfinite(rows))[0][0])
        raise ValueError(f"the dataset has NaN or infinite observations or actions (first at step {row}); drop or "
                         f"repair those steps")
    return rows


# ---------------------------------------------------------------- the denoiser


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


def with_condition(model: nn.Module, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """The network input of a conditioned model: ``x (B, D, H)`` followed by ``K`` channels that
    repeat the known values ``cond (B, K)`` along time, divided by the preconditioning's ``c_in``
    so that the network reads them at their own scale at every noise level."""
    c_in = model.coefficients(sigma)[2]  # (B,)
    channels = (cond / c_in[:, None])[:, :, None].expand(-1, -1, x.shape[2])  # (B, K, H)
    return torch.cat([x, channels.to(x)], dim=1)  # (B, D + K, H)


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
        noise = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0)
        x = x0 + sigma[:, None, None] * noise
        out, c_skip, c_out = model.raw(with_condition(model, x, sigma, cond), sigma)
        dim = x0.shape[1]
        target = (x0 - c_skip * x) / c_out  # what the network should output in the trajectory channels
        err = ((out[:, :dim].float() - target.float()) ** 2).flatten(1).mean(1)
        return self.weighting(sigma).float() * c_out.reshape(-1).float() ** 2 * err


class ConditionedDenoiser(nn.Module):
    """The ``(B, H, D)`` denoiser of a model trained with a ``known_mask``, given the known values
    ``cond (B, K)`` (``known[:, mask > 0]`` of :func:`constraints`)."""

    def __init__(self, model: nn.Module, cond: torch.Tensor):
        super().__init__()
        self.model, self.cond = model, cond

    @property
    def schedule(self):
        return self.model.schedule

    def forward(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        x_t = x.transpose(1, 2)  # (B, D, H)
        denoised = self.model(with_condition(self.model, x_t, sigma, self.cond.to(x)), sigma)
        return denoised[:, :x_t.shape[1]].transpose(1, 2)  # (B, H, D)


# ---------------------------------------------------------------- conditioning and sampling


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
                 guidance_scale: float = 0.0, callback=None) -> torch.Tensor:
    """Trajectories ``(B, H, D)`` with ``known`` kept exactly where ``mask`` is 1, sampled by
    ``method`` on ``denoiser`` (of ``(B, H, D)``); with a ``value`` model and ``guidance_scale > 0``
    the denoiser is first steered up the value's gradient (``D + scale sigma^2 grad V``)."""
    options = {} if callback is None else {"callback": callback}
    return sample_inpaint(value_guided(denoiser, value, guidance_scale), known, mask, sigmas, method=method,
                          generator=generator, **options)


def value_guided(denoiser, value, guidance_scale: float):
    """``denoiser`` steered up the gradient of the noisy-plan ``value`` model (``D + scale sigma^2
    grad V``); unchanged without a value model or with ``guidance_scale <= 0``."""
    if value is None or guidance_scale <= 0:
        return denoiser
    return GradientGuidance(denoiser, lambda x, sigma, cond=None: value(x, sigma), guidance_scale, on="x")


class CallCounter:
    """A denoiser that counts its calls (the network evaluations of a plan)."""

    def __init__(self, denoiser):
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x, sigma, cond=None):
        self.calls += 1
        return self.denoiser(x, sigma) if cond is None else self.denoiser(x, sigma, cond)


# ---------------------------------------------------------------- value model


def returns_to_go(rewards, ends, discount: float) -> np.ndarray:
    """``G_t = r_t + discount * G_{t+1}``, restarted after every step marked in ``ends``
    (episode ends): Diffuser's value targets, the discounted return from each step on."""
    rewards = np.asarray(rewards, np.float64)
    ends = np.asarray(ends, bool)
    returns = np.zeros_like(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        if ends[t]:
            running = 0.0
        running = rewards[t] + discount * running
        returns[t] = running
    return returns


class ValueModel(nn.Module):
    """``V(x, sigma) -> (B,)``: the temporal U-Net with one output channel, averaged over
    time, on the noisy trajectory scaled like EDM's input (``x / sqrt(sigma^2 + sigma_data^2)``)
    and conditioned on the schedule's ``c_noise``. It predicts the normalised return."""

    def __init__(self, backbone: UNet1D, schedule):
        super().__init__()
        if backbone.config.output_channels != 1:
            raise ValueError(f"a value model's U-Net needs out_channels=1, got {backbone.config.output_channels}")
        self.backbone, self.schedule = backbone, schedule

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        x_in = x.transpose(1, 2) / (sigma**2 + self.schedule.sigma_data**2).sqrt()[:, None, None]  # (B, D, H)
        return self.backbone(x_in, self.schedule.c_noise(sigma)).mean(dim=(1, 2))  # (B,)


def build_value_model(dim: int, horizon: int, schedule, *, preset: str = "small", seed: int = 0) -> ValueModel:
    config = backbone_config(dim, horizon, preset, out_channels=1, embedding="fourier")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = UNet1D(config)
        # a regressor need not start at zero: a random read-out learns faster
        nn.init.xavier_uniform_(backbone.conv_out.weight)
    return ValueModel(backbone, schedule)


def _save_module(module: nn.Module, run_dir: Path, name: str, info: dict) -> None:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write_bytes(Path(run_dir) / f"{name}.safetensors", save(state))
    atomic_write_json(Path(run_dir) / f"{name}.json", info)


def _load_state(run_dir: Path, name: str) -> tuple[dict, dict] | None:
    from safetensors.torch import load_file

    path = Path(run_dir) / f"{name}.safetensors"
    if not path.is_file():
        return None
    try:
        return json.loads((Path(run_dir) / f"{name}.json").read_text()), load_file(path)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{str(path)!r} or its .json is damaged ({error}); train the run again") from None


def save_value_model(value: ValueModel, run_dir, stats: dict) -> None:
    """``value_model.safetensors`` and ``value_model.json`` (its U-Net config and the return
    statistics ``{"mean", "std", "discount"}`` that undo the normalisation)."""
    _save_module(value.backbone, run_dir, VALUE_FILE, {"backbone": asdict(value.backbone.config), **stats})


def load_value_model(run_dir, schedule, device="cpu") -> tuple[ValueModel, dict] | None:
    """The run's value model and its return statistics, or None when it has none."""
    loaded = _load_state(run_dir, VALUE_FILE)
    if loaded is None:
        return None
    info, state = loaded
    backbone = UNet1D(UNet1DConfig(**info.pop("backbone")))
    backbone.load_state_dict(state)
    return ValueModel(backbone, schedule).to(device).eval().requires_grad_(False), info


# ---------------------------------------------------------------- behaviour cloning


class BCNet(nn.Module):
    """Behaviour cloning: an MLP from normalised inputs (observation, goal) to a normalised action."""

    def __init__(self, in_dim: int, act_dim: int, width: int = 256, depth: int = 2):
        super().__init__()
        layers, size = [], in_dim
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ReLU()]
            size = width
        self.net = nn.Sequential(*layers, nn.Linear(size, act_dim))
        self.in_dim, self.act_dim, self.width, self.depth = in_dim, act_dim, width, depth

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)


def save_mlp(net: BCNet, run_dir, name: str, info: dict) -> None:
    """``NAME.safetensors`` and ``NAME.json`` (sizes and ``info``) of a :class:`BCNet`: the
    behaviour-cloning policy (``bc_policy``) or the inverse dynamics (``inverse_dynamics``)."""
    _save_module(net, run_dir, name, {"in_dim": net.in_dim, "act_dim": net.act_dim, "width": net.width,
                                      "depth": net.depth, **info})


def load_mlp(run_dir, name: str) -> tuple[BCNet, dict] | None:
    """The :class:`BCNet` saved as ``name`` in a run folder and its info (None when absent)."""
    loaded = _load_state(run_dir, name)
    if loaded is None:
        return None
    info, state = loaded
    net = BCNet(info["in_dim"], info["act_dim"], info["width"], info["depth"])
    net.load_state_dict(state)
    return net.eval().requires_grad_(False), info


# ---------------------------------------------------------------- environments


def make_env(env_id: str, *, env_kwargs: dict | None = None, max_episode_steps: int | None = None):
    """``gymnasium.make(env_id, **env_kwargs)`` (registering gymnasium-robotics' envs when installed);
    an unknown id is a ValueError."""
    try:
        import gymnasium as gym
    except ImportError as error:
        raise ImportError(f"planning in an environment needs gymnasium ({error}); pip install 'gymnasium>=1.0'") \
            from error
    try:
        import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)
    except ImportError:
        if "Maze" in env_id:
            raise ImportError(f"{env_id} needs gymnasium-robotics and MuJoCo; pip install 'gymnasium-robotics>=1.4' "
                              f"'mujoco>=3'") from None
    options = dict(env_kwargs or {})
    if max_episode_steps:
        options["max_episode_steps"] = int(max_episode_steps)
    try:
        return gym.make(env_id, **options)
    except gym.error.Error as error:
        raise ValueError(f"unknown or unusable gymnasium env id {env_id!r} ({error}); use a registered id such as "
                         f"'PointMaze_UMaze-v3' or 'Pendulum-v1'") from None


def split_observation(obs, obs_dim: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``(state (S,), goal or None)`` of an observation as an env returns it: a goal env's dict
    (``observation``, ``desired_goal``) or an array."""
    goal = None
    if isinstance(obs, dict):
        if "observation" not in obs:
            raise ValueError(f"a dict observation needs an 'observation' entry (a goal env's), got keys {list(obs)}")
        goal = None if obs.get("desired_goal") is None else np.asarray(obs["desired_goal"], np.float64).reshape(-1)
        obs = obs["observation"]
    state = np.asarray(obs, dtype=np.float64)
    if state.shape != (obs_dim,):
        raise ValueError(f"observation of shape {state.shape}; this planner was trained on observations of shape "
                         f"({obs_dim},): give it what its own env (Planner.make_env) returns")
    if not np.isfinite(state).all():
        raise ValueError("the observation has NaN or infinite values")
    return state, goal


# ---------------------------------------------------------------- the planner


@dataclass(frozen=True)
class PlannerSettings:
    """What a :class:`Planner` needs besides the weights, saved as ``"planner"`` in a run's config."""

    env_id: str
    obs_dim: int
    act_dim: int
    horizon: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    env_kwargs: dict = field(default_factory=dict)
    max_episode_steps: int = 0  # 0: the env's own limit
    goal_dims: tuple[int, ...] = ()  # state features the env's desired_goal fixes at step H - 1
    rest_dims: tuple[int, ...] = ()  # state features fixed to 0 there (velocities)
    tracking: str = "actions"  # "pd" or "inverse": follow planned states; "actions": execute planned actions
    position_dims: tuple[int, ...] = ()  # pd: state features the actions push (one per action)
    velocity_dims: tuple[int, ...] = ()  # pd: their rates
    kp: float = 10.0
    kd: float = 4.0
    replan_every: int = 0  # steps between plans; 0: one plan per goal (open loop)
    num_plans: int = 1  # plans sampled at once; the best by value is executed
    guidance_scale: float = 0.0  # value guidance (needs a value model)
    conditioned: bool = False  # the model takes the known values as extra channels (WindowLoss's known_mask)
    sampler: str = DEFAULT_METHOD
    sample_steps: int = 16

    def __post_init__(self):
        for name in ("goal_dims", "rest_dims", "position_dims", "velocity_dims", "action_low", "action_high"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.tracking not in TRACKING:
            raise ValueError(f"unknown tracking {self.tracking!r}; choose one of: {', '.join(TRACKING)}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of: {', '.join(SAMPLERS)}")
        for name in ("obs_dim", "act_dim", "horizon", "num_plans", "sample_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.replan_every < 0 or self.guidance_scale < 0:
            raise ValueError(f"need replan_every >= 0 and guidance_scale >= 0, got {self.replan_every}, "
                             f"{self.guidance_scale}")
        if len(self.action_low) != self.act_dim or len(self.action_high) != self.act_dim:
            raise ValueError(f"action_low and action_high need {self.act_dim} entries each")
        if any(not 0 <= d < self.obs_dim for d in self.goal_dims + self.rest_dims + self.position_dims
               + self.velocity_dims):
            raise ValueError(f"goal, rest, position and velocity dims must index the {self.obs_dim} state features")
        if self.tracking == "pd" and not (len(self.position_dims) == len(self.velocity_dims) == self.act_dim):
            raise ValueError(f"pd tracking needs one position and one velocity feature per action ({self.act_dim}), "
                             f"got position_dims {self.position_dims}, velocity_dims {self.velocity_dims}")

    @classmethod
    def from_dict(cls, data: dict) -> "PlannerSettings":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


class Planner:
    """Diffuser's planning loop for a gymnasium env: ``reset(obs)`` at each episode start, then
    ``action = act(obs)`` every step, ``obs`` exactly as the env returns it.

    A plan is ``num_plans`` trajectories sampled with the current observation (and the env's
    goal, if any) inpainted, under value guidance when the run has a value model; the one of
    highest value is kept. ``tracking="pd"`` steers towards the planned state one step ahead,
    ``action = kp (s*_pos - s_pos) + kd (s*_vel - s_vel)``, and towards the goal at rest once
    the plan is used up; ``tracking="actions"`` executes the planned actions. Plans are drawn
    again every ``replan_every`` steps (0: only when the goal changes or the plan runs out with
    ``actions`` tracking). ``plans`` keeps the plans of the current episode (for drawing),
    ``plan_seconds`` and ``denoiser_calls`` their cost."""

    def __init__(self, model: nn.Module, settings: PlannerSettings, normalizer: Normalizer, *,
                 value: ValueModel | None = None, inverse: BCNet | None = None, device="cpu", seed: int = 0):
        if normalizer.dim != settings.obs_dim + settings.act_dim:
            raise ValueError(f"the normalizer has {normalizer.dim} features, the planner needs "
                             f"{settings.obs_dim} + {settings.act_dim}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.denoiser = TrajectoryDenoiser(self.model)
        self.settings, self.normalizer = settings, normalizer
        self.value = None if value is None else value.to(self.device).eval().requires_grad_(False)
        if settings.tracking == "inverse" and inverse is None:
            raise ValueError("tracking='inverse' needs an inverse dynamics model (train with inverse_steps > 0)")
        self.inverse = inverse
        self.generator = torch.Generator().manual_seed(seed)
        self.plan_seconds: list[float] = []
        self.denoiser_calls: list[int] = []
        self.last_calls = 0  # network calls of the latest sample()
        self.reset()

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, device="cpu", sampler: str | None = None,
                 steps: int | None = None, seed: int = 0, **options) -> "Planner":
        """The planner of a run folder written by a trajectory recipe; ``options`` override
        :class:`PlannerSettings` fields (``replan_every``, ``num_plans``, ``guidance_scale``,
        ``tracking``, ``kp``, ``kd``...)."""
        from ..train.checkpoint import from_pretrained  # a run folder is the training layer's format

        model, saved = from_pretrained(run_dir, device=device)
        if "planner" not in saved or "normalizer" not in saved:
            raise ValueError(f"{str(run_dir)!r} is not a trajectory run (its config has no planner settings); train "
                             f"one with a trajectory recipe, e.g. `multidiff train pointmaze_umaze`")
        settings = PlannerSettings.from_dict(saved["planner"])
        names = [f.name for f in fields(PlannerSettings)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ValueError(f"unknown planner option(s) {unknown}; choose among {names}")
        overrides = {k: v for k, v in {"sampler": sampler, "sample_steps": steps, **options}.items() if v is not None}
        settings = replace(settings, **overrides)
        loaded = load_value_model(run_dir, model.schedule, device)
        if settings.guidance_scale > 0 and loaded is None:
            raise ValueError(f"guidance_scale={settings.guidance_scale} needs a value model; {str(run_dir)!r} has none")
        inverse = load_mlp(run_dir, INVERSE_FILE)
        return cls(model, settings, Normalizer.from_dict(saved["normalizer"]),
                   value=None if loaded is None else loaded[0], inverse=None if inverse is None else inverse[0],
                   device=device, seed=seed)

    def make_env(self, seed: int | None = None):
        """The env the run was trained for, with its settings (reset with ``seed`` when given)."""
        s = self.settings
        env = make_env(s.env_id, env_kwargs=s.env_kwargs, max_episode_steps=s.max_episode_steps or None)
        if seed is not None:
            env.reset(seed=seed)
            env.action_space.seed(seed)
        return env

    def reset(self, obs=None) -> None:
        """Forget the plan (call at every episode start; ``obs`` is checked when given)."""
        if obs is not None:
            split_observation(obs, self.settings.obs_dim)
        self.current: dict | None = None
        self.plans: list[dict] = []
        self.goal: np.ndarray | None = None
        self.t = 0

    def sample(self, states, goals=None, *, callback=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Plans ``(N, H, D)`` in model space from ``states (N, S)`` (and ``goals (N, G)``, in env
        units), and their values ``(N,)`` (None without a value model)."""
        s = self.settings
        known, mask = self.constraints(states, goals)
        counter = CallCounter(self._network(known, mask[0] > 0))
        sigmas = default_sigmas(self.model.schedule, s.sample_steps, s.sampler).to(torch.float32)
        with torch.no_grad():
            x = sample_plans(counter, known, mask, sigmas, method=s.sampler, generator=self.generator,
                             value=self.value, guidance_scale=s.guidance_scale, callback=callback)  # (N, H, D)
            values = None
            if self.value is not None:
                values = self.value(x, torch.full((len(x),), float(self.model.schedule.sigma_min), device=self.device))
        self.last_calls = counter.calls
        return x, values

    def constraints(self, states, goals=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``known, mask (N, H, D)`` in model space for plans from ``states (N, S)`` (and ``goals
        (N, G)`` in env units, when the planner reaches goals)."""
        s = self.settings
        first = torch.as_tensor(np.asarray(states), dtype=torch.float32, device=self.device)
        goal = None
        if s.goal_dims:
            if goals is None:
                raise ValueError(f"this planner reaches goals: give the env's desired_goal ({len(s.goal_dims)} values)")
            goal = torch.as_tensor(np.asarray(goals), dtype=torch.float32, device=self.device)
        return constraints(self.normalizer, s.horizon, s.obs_dim, first, goal, goal_dims=s.goal_dims,
                           rest_dims=s.rest_dims)

    def _network(self, known: torch.Tensor, keep: torch.Tensor):
        """The denoiser of plans whose known values are ``known (n, H, D)`` at ``keep (H, D)``:
        the network conditioned on them if it was trained so, else the plain one."""
        return ConditionedDenoiser(self.model, known[:, keep]) if self.settings.conditioned else self.denoiser

    def calibration_denoiser(self, mask: torch.Tensor):
        """The denoiser :meth:`sample` draws plans with, as a function ``(x, sigma, cond)`` of each
        draw's known values ``cond (n, H, D)`` (the ``known`` of :meth:`constraints`; ``mask (H,
        D)`` is the same for every draw), so a grid can be calibrated on any slice of a batch of
        plans: the conditioned network, value guidance when the run uses it, the constraints
        inpainted."""
        keep = mask > 0

        def denoiser(x, sigma, cond):
            base = value_guided(self._network(cond, keep), self.value, self.settings.guidance_scale)
            return Inpaint(base, mask.to(x), cond)(x, sigma)

        return denoiser

    def plan(self, state: np.ndarray, goal: np.ndarray | None = None) -> dict:
        """Sample ``num_plans`` plans from ``state`` (and ``goal``) and return the best:
        ``observations (H, S)``, ``actions (H, A)`` in env units, ``value`` (normalised; None
        without a value model)."""
        s = self.settings
        start = time.perf_counter()
        states = np.repeat(np.asarray(state, np.float64)[None], s.num_plans, axis=0)
        goals = None if goal is None else np.repeat(np.asarray(goal, np.float64)[None], s.num_plans, axis=0)
        x, values = self.sample(states, goals)
        best = 0 if values is None else int(values.argmax())
        self.plan_seconds.append(time.perf_counter() - start)
        self.denoiser_calls.append(self.last_calls)
        rows = self.normalizer.decode(x[best].double().cpu()).numpy()  # (H, D)
        return {"observations": rows[:, :s.obs_dim], "actions": rows[:, s.obs_dim:],
                "value": None if values is None else float(values[best])}

    @torch.no_grad()
    def inverse_action(self, state: np.ndarray, target: np.ndarray) -> np.ndarray:
        """The action that takes ``state`` to ``target`` next, by the learned inverse dynamics."""
        s = self.settings
        pair = np.concatenate([self.normalizer.encode(state, range(s.obs_dim)),
                               self.normalizer.encode(target, range(s.obs_dim))])
        out = self.inverse(torch.as_tensor(pair, dtype=torch.float32)[None]).double().numpy()[0]
        return self.normalizer.decode(out, range(s.obs_dim, s.obs_dim + s.act_dim))

    def act(self, obs) -> np.ndarray:
        """The action for ``obs`` (as the env returned it), planning first when a plan is due."""
        s = self.settings
        state, goal = split_observation(obs, s.obs_dim)
        if s.goal_dims and (goal is None or len(goal) != len(s.goal_dims)):
            raise ValueError(f"this planner reaches goals: it needs a dict observation whose desired_goal has "
                             f"{len(s.goal_dims)} values, got {None if goal is None else len(goal)}")
        goal = goal if s.goal_dims else None
        goal_moved = (goal is None) != (self.goal is None) or (goal is not None and not np.array_equal(goal, self.goal))
        since = self.t - self.current["t"] if self.current is not None else 0
        if (self.current is None or goal_moved or (s.replan_every and since >= s.replan_every)
                or (s.tracking != "pd" and since >= s.horizon - 1)):
            self.current = {"t": self.t, **self.plan(state, goal)}
            self.plans.append(self.current)
            self.goal = None if goal is None else goal.copy()
            since = 0
        self.t += 1
        if s.tracking == "actions":
            action = self.current["actions"][min(since, s.horizon - 1)]
        elif s.tracking == "inverse":
            target = self.current["observations"][min(since + 1, s.horizon - 1)]
            action = self.inverse_action(state, target)
        else:
            planned = self.current["observations"]
            if since + 1 < s.horizon:
                target = planned[since + 1]
            else:  # the plan is used up: hold its last state, at rest
                target = planned[-1].copy()
                if goal is not None:
                    target[list(s.goal_dims)] = goal
                target[list(s.velocity_dims)] = 0.0
            position, velocity = list(s.position_dims), list(s.velocity_dims)
            action = s.kp * (target[position] - state[position]) + s.kd * (target[velocity] - state[velocity])
        return np.clip(action, s.action_low, s.action_high).astype(np.float32)


# ---------------------------------------------------------------- baselines


class BCPolicy:
    """Behaviour cloning as a policy: the normalised observation (and, when ``goal_dims`` is
    set, the env's goal normalised like those state features) through :class:`BCNet`, its
    output decoded with the action features' statistics and clipped to the action box."""

    def __init__(self, net: BCNet, settings: PlannerSettings, normalizer: Normalizer):
        self.net, self.settings, self.normalizer = net, settings, normalizer

    def inputs(self, states: np.ndarray, goals: np.ndarray | None = None) -> np.ndarray:
        """``(N, S [+ G])`` network inputs from states ``(N, S)`` and goals ``(N, G)``."""
        s = self.settings
        parts = [self.normalizer.encode(np.asarray(states, np.float64), range(s.obs_dim))]
        if s.goal_dims:
            parts.append(self.normalizer.encode(np.asarray(goals, np.float64), s.goal_dims))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def targets(self, actions: np.ndarray) -> np.ndarray:
        s = self.settings
        return self.normalizer.encode(np.asarray(actions, np.float64), range(s.obs_dim, s.obs_dim + s.act_dim))

    def reset(self, obs=None) -> None:
        pass

    @torch.no_grad()
    def act(self, obs) -> np.ndarray:
        """The cloned action for ``obs`` (as the env returned it)."""
        s = self.settings
        state, goal = split_observation(obs, s.obs_dim)
        if s.goal_dims and goal is None:
            raise ValueError("this behaviour cloning policy is goal-conditioned; give a dict observation with "
                             "'desired_goal'")
        inputs = torch.from_numpy(self.inputs(state[None], None if goal is None else goal[None]))
        action = self.normalizer.decode(self.net(inputs).double().numpy()[0], range(s.obs_dim, s.obs_dim + s.act_dim))
        return np.clip(action, s.action_low, s.action_high).astype(np.float32)


class RandomPolicy:
    """Uniformly random actions in the box ``[low, high]``, from ``seed``."""

    def __init__(self, low, high, seed: int = 0):
        self.low, self.high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        self.rng = np.random.default_rng(seed)

    def reset(self, obs=None) -> None:
        pass

    def act(self, obs) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)


class ControllerPolicy:
    """A scripted controller (``controller(obs) -> action``, with ``reset()``) as a policy."""

    def __init__(self, controller):
        self.controller = controller

    def reset(self, obs=None) -> None:
        self.controller.reset()

    def act(self, obs) -> np.ndarray:
        return np.asarray(self.controller(obs), np.float32)


# ---------------------------------------------------------------- evaluation in the env


def maze_episodes(env, count: int, seed: int) -> list[dict]:
    """``count`` episode starts for a PointMaze env: distinct random free start and goal cells and
    a reset seed, all from ``seed`` (reset with ``env.reset(seed=..., options=...)``)."""
    from ..data.trajectory import maze_geometry

    free = maze_geometry(env).free_cells()
    rng = np.random.default_rng(seed)
    starts = []
    for _ in range(count):
        start, goal = (free[i] for i in rng.choice(len(free), size=2, replace=False))
        starts.append({"seed": int(rng.integers(2**31)),
                       "options": {"reset_cell": np.array(start), "goal_cell": np.array(goal)}})
    return starts


def plain_episodes(count: int, seed: int) -> list[dict]:
    """``count`` reset seeds drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    return [{"seed": int(rng.integers(2**31)), "options": None} for _ in range(count)]


def episode_starts(env, count: int, seed: int) -> list[dict]:
    """Maze starts for a maze env, plain seeds otherwise."""
    return maze_episodes(env, count, seed) if hasattr(env.unwrapped, "maze") else plain_episodes(count, seed)


def run_episodes(env, policy, starts: list[dict], *, max_steps: int | None = None, record: int = 0) -> dict:
    """Run ``policy`` (``reset(obs)`` and ``act(obs)``) from each of ``starts``: every episode lasts
    ``max_steps`` steps (default: the env's limit) or until the env terminates. Returns the summed
    rewards, whether and when ``info["success"]`` first turned true (``has_success``: whether the
    env reports it at all), and the states of the first ``record`` episodes (with the policy's
    ``plans`` when it has them)."""
    limit = int(max_steps or env.spec.max_episode_steps)
    returns, successes, steps_to_success, paths = [], [], [], []
    has_success = False
    for index, start in enumerate(starts):
        obs, info = env.reset(seed=start["seed"], options=start["options"])
        policy.reset(obs)
        total, first_success = 0.0, None
        states = [np.asarray(obs["observation"] if isinstance(obs, dict) else obs, np.float64)]
        goal = np.asarray(obs["desired_goal"]) if isinstance(obs, dict) and "desired_goal" in obs else None
        for step in range(1, limit + 1):
            obs, reward, terminated, truncated, info = env.step(policy.act(obs))
            total += float(reward)
            if index < record:
                states.append(np.asarray(obs["observation"] if isinstance(obs, dict) else obs, np.float64))
            has_success = has_success or "success" in info
            if first_success is None and info.get("success"):
                first_success = step
            if terminated:
                break
        returns.append(total)
        successes.append(first_success is not None)
        if first_success is not None:
            steps_to_success.append(first_success)
        if index < record:
            paths.append({"states": np.stack(states), "goal": goal,
                          "plans": [p["observations"] for p in getattr(policy, "plans", [])]})
    return {"returns": returns, "successes": successes, "steps_to_success": steps_to_success, "paths": paths,
            "has_success": has_success}


def normalised_score(value: float, random_value: float, reference_value: float) -> float | None:
    """D4RL's normalised score ``100 (R - R_random) / (R_reference - R_random)`` (None when the two
    baselines tie)."""
    if not math.isfinite(reference_value - random_value) or reference_value == random_value:
        return None
    return 100.0 * (value - random_value) / (reference_value - random_value)


__all__ = ["BCNet", "BCPolicy", "BC_FILE", "CallCounter", "ConditionedDenoiser", "value_guided", "ControllerPolicy", "INVERSE_FILE",
           "NORMALIZERS", "Normalizer", "Planner", "PlannerSettings", "RandomPolicy", "TRACKING", "TRAJECTORY_PRESETS",
           "TrajectoryDenoiser", "VALUE_FILE", "ValueModel", "WindowLoss", "backbone_config", "build_value_model",
           "condition_mask", "constraints", "episode_starts", "load_mlp", "load_value_model", "make_env",
           "maze_episodes", "normalised_score", "plain_episodes", "returns_to_go", "run_episodes", "sample_plans",
           "save_mlp", "save_value_model", "split_observation", "step_rows", "with_condition"]
