"""Trajectory recipes: planning by diffusion over whole state-action trajectories (Diffuser,
Janner et al. 2022) on gymnasium environments.

===================  ==================================================================
``pointmaze_umaze``  the CPU default: gymnasium-robotics' PointMaze U-Maze, data of a
                     noisy waypoint controller (multidiff.data.trajectory), horizon 128;
                     plans start and goal by inpainting, a PD law tracks the plan
``pointmaze_medium`` the Medium maze, horizon 256, sized for a GPU
``pointmaze_large``  the Large maze, horizon 384, sized for a GPU
``pendulum``         gymnasium's Pendulum-v1, reward maximising: mixed random and
                     swing-up data, a value model guides and ranks plans, receding horizon
===================  ==================================================================

Any recipe trains on your own offline data instead with ``dataset=file data_path=FILE.npz
env_id=ID`` (the D4RL/Minari fields, see ``load_offline_dataset``).

The denoiser is conditioned (``conditioned=true``): besides the exact inpainting of the start
and goal it reads them as input channels, trained on windows whose own ends are the condition
(see :mod:`multidiff.adapters.trajectory`); ``conditioned=false`` is Diffuser's unconditional
training. EDM's training sigmas sit higher than for images (``p_mean = 0``), where a plan's
route is settled.

A run folder holds, beside the weights and config (whose ``normalizer`` and ``planner``
entries are what :class:`~multidiff.adapters.trajectory.Planner` needs), ``bc_policy.*``
(the behaviour-cloning baseline) and, when trained, ``value_model.*`` (``value_steps``) and
``inverse_dynamics.*`` (``inverse_steps``), each safetensors weights beside a JSON config.

:func:`plan` (``multidiff plan RUN``) runs the planner in the real env beside three baselines on
the same episodes (random start and goal cells for the mazes, reset seeds otherwise): the
controller that made the data (``reference``), a uniformly random policy and behaviour cloning.
It reports the success rate (``info["success"]``), the mean return (the env's rewards summed
over the whole episode: for the mazes, steps within 0.45 of the goal, as D4RL's Maze2D), D4RL's
normalised score ``100 (R - R_random) / (R_reference - R_random)``, the mean steps to success, and
the wall time (median over the plans) and denoiser calls of one plan.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..adapters.trajectory import (BC_FILE, INVERSE_FILE, NORMALIZERS, TRACKING, TRAJECTORY_PRESETS, VALUE_FILE, BCNet,
                                   BCPolicy, ControllerPolicy, Normalizer, Planner, PlannerSettings, RandomPolicy,
                                   ValueModel, WindowLoss, backbone_config, build_value_model, condition_mask,
                                   episode_starts, load_mlp, make_env, normalised_score, returns_to_go, run_episodes,
                                   save_mlp, save_value_model, split_observation, step_rows)
from ..atomic import atomic_write, atomic_write_bytes, atomic_write_json
from ..backbones import UNet1D
from ..core.losses import WEIGHTINGS
from ..core.precond import PRECONDITIONERS, Precond
from ..core.samplers import SAMPLERS
from ..core.schedules import EDM, SCHEDULES
from ..data import ShuffledBatches
from ..data import trajectory as trajectory_data
from ..train import Trainer, from_pretrained, load_config, remove_checkpoints, save_pretrained
from ..train.distributed import barrier
from ..train.progress import progress_bar, sampling_progress
from .common import (check_fields, config_from_saved, device_of, engine_config, final_loss, loss_weighting,
                     make_schedule, noise_embedding, sampling_device, seeded_model, threads_of)

DATASETS = ("umaze", "medium", "large", "pendulum", "file")
DEVICES = ("auto", "cpu", "cuda")
GOAL_VELOCITIES = ("zero", "free")
MAZE_KWARGS = {"continuing_task": True, "reset_target": False}  # the goal stays put; only the episode limit ends it
PLOTTED_EPISODES = 8


@dataclass(frozen=True)
class TrajectoryConfig:
    recipe: ClassVar[str] = "pointmaze_umaze"
    # data
    dataset: str = "umaze"  # umaze, medium, large (PointMaze), pendulum, or file (data_path)
    data_steps: int = 0  # steps to record; 0: the dataset's default (umaze 200k, medium/large 400k, pendulum 100k)
    data_seed: int = 0
    data_path: str = ""  # dataset=file: an .npz with observations, actions, rewards, terminals (and timeouts)
    env_id: str = ""  # the gymnasium env to plan in; "": the dataset's own (needed for dataset=file)
    horizon: int = 128  # H, steps per plan
    normalization: str = "limits"  # per feature: "limits" ([-1, 1], Diffuser's) or "gaussian"
    # planning
    goal_velocity: str = "zero"  # goal envs: plans end at rest on the goal ("zero") or at any speed ("free")
    tracking: str = ""  # "pd" or "inverse" (follow planned states) or "actions"; "": pd for PointMaze, inverse
    #                     when inverse_steps > 0, else actions
    kp: float = 10.0  # pd tracking gains (per unit of position / velocity error)
    kd: float = 4.0
    replan_every: int = 0  # steps between plans; 0: plan once per goal and track it open loop
    num_plans: int = 1  # plans sampled at once; with a value model the best is executed
    guidance_scale: float = 0.0  # value guidance scale (needs value_steps > 0)
    conditioned: bool = True  # the denoiser also takes the start (and goal) as input channels; false: Diffuser's
    #                           unconditional training (both condition by inpainting at sampling)
    max_episode_steps: int = 0  # 0: the env's own limit (U-Maze 300, Medium 600, Large 800, Pendulum 200)
    # value model and the behaviour-cloning baseline
    value_steps: int = 0  # training steps of the value model; 0: none
    value_preset: str = "tiny"  # its U-Net size (a TRAJECTORY_PRESETS name); guidance runs it forward and back
    discount: float = 0.99  # of the value targets (discounted return from each window's start)
    bc_steps: int = 3000  # training steps of the behaviour-cloning MLP; 0: no BC baseline
    inverse_steps: int = 0  # training steps of an inverse dynamics MLP (s_t, s_t+1) -> a_t; 0: none
    # model
    preset: str = "small"  # a multidiff.adapters.trajectory.TRAJECTORY_PRESETS size
    width: int = 0  # base_channels; 0: the preset's
    schedule: str = "edm"
    prediction: str = "edm"
    weighting: str = "edm"
    sigma_data: float = 0.5
    p_mean: float = 0.0  # EDM training sigmas: log-normal(p_mean, p_std); a plan's route is settled at sigma ~ 0.5-5,
    p_std: float = 1.2  # above EDM's image default (p_mean -1.2)
    # training (pointmaze_umaze: ~0.36 s a step at one thread, ~18 min; ~11 min on 2 cores)
    steps: int = 3000
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    decay: str = "cosine"
    ema_decay: float = 0.998
    seed: int = 0
    device: str = "auto"
    bf16: bool = True
    compile: bool = False
    threads: int = 0
    # sampling and evaluation
    sampler: str = "unipc"
    sample_steps: int = 16
    eval_episodes: int = 50
    checkpoint_every: int = 1000
    sample_every: int = 0
    resume: bool = False

    def __post_init__(self):
        check_fields(self, {"dataset": DATASETS, "schedule": SCHEDULES, "prediction": PRECONDITIONERS,
                            "weighting": WEIGHTINGS, "sampler": SAMPLERS, "device": DEVICES,
                            "normalization": NORMALIZERS, "preset": TRAJECTORY_PRESETS,
                            "value_preset": TRAJECTORY_PRESETS, "goal_velocity": GOAL_VELOCITIES},
                     at_least_one=("steps", "batch_size", "sample_steps", "eval_episodes", "horizon", "num_plans"),
                     non_negative=("data_steps", "data_seed", "width", "warmup_steps", "seed", "threads",
                                   "checkpoint_every", "sample_every", "replan_every", "max_episode_steps",
                                   "value_steps", "bc_steps", "inverse_steps"),
                     positive=("lr", "sigma_data", "p_std"))
        if self.tracking and self.tracking not in TRACKING:
            raise ValueError(f"unknown tracking {self.tracking!r}; choose one of: {', '.join(TRACKING)} (or '' for "
                             f"the env's default)")
        if not 0 <= self.ema_decay < 1 or not 0 < self.discount <= 1 or self.guidance_scale < 0:
            raise ValueError(f"need ema_decay in [0, 1), discount in (0, 1] and guidance_scale >= 0, got "
                             f"{self.ema_decay}, {self.discount}, {self.guidance_scale}")
        if self.guidance_scale > 0 and not self.value_steps:
            raise ValueError(f"guidance_scale={self.guidance_scale} needs a value model; set value_steps > 0")
        for name in ("preset", "value_preset"):
            levels = len(TRAJECTORY_PRESETS[getattr(self, name)]["channel_mults"])
            if self.horizon % 2 ** (levels - 1):
                raise ValueError(f"horizon {self.horizon} must be divisible by {2 ** (levels - 1)} for {name} "
                                 f"{getattr(self, name)!r} ({levels} U-Net levels)")
        if self.tracking == "inverse" and not self.inverse_steps:
            raise ValueError("tracking=inverse needs an inverse dynamics model; set inverse_steps > 0")
        if self.dataset == "file" and not (self.data_path and self.env_id):
            raise ValueError("dataset=file needs data_path=FILE.npz (your offline data) and env_id=ID (the gymnasium "
                             "env it comes from, to plan in)")

    @property
    def env_id_or_default(self) -> str:
        if self.env_id:
            return self.env_id
        if self.dataset in trajectory_data.MAZES:
            return trajectory_data.MAZES[self.dataset]
        return trajectory_data.PENDULUM_ID


@dataclass(frozen=True)
class PointMazeUMazeConfig(TrajectoryConfig):
    recipe: ClassVar[str] = "pointmaze_umaze"


@dataclass(frozen=True)
class PointMazeMediumConfig(TrajectoryConfig):
    recipe: ClassVar[str] = "pointmaze_medium"
    dataset: str = "medium"
    horizon: int = 256
    preset: str = "diffuser"
    steps: int = 100_000
    batch_size: int = 64
    lr: float = 2e-4
    warmup_steps: int = 1000
    ema_decay: float = 0.9995
    checkpoint_every: int = 10_000


@dataclass(frozen=True)
class PointMazeLargeConfig(PointMazeMediumConfig):
    recipe: ClassVar[str] = "pointmaze_large"
    dataset: str = "large"
    horizon: int = 384


@dataclass(frozen=True)
class PendulumConfig(TrajectoryConfig):
    recipe: ClassVar[str] = "pendulum"
    dataset: str = "pendulum"
    horizon: int = 32
    replan_every: int = 4
    num_plans: int = 16
    guidance_scale: float = 0.03
    value_steps: int = 3000
    discount: float = 0.97
    inverse_steps: int = 3000
    steps: int = 4000
    sample_steps: int = 8
    eval_episodes: int = 10


CONFIGS: dict[str, type[TrajectoryConfig]] = {cls.recipe: cls for cls in (
    PointMazeUMazeConfig, PointMazeMediumConfig, PointMazeLargeConfig, PendulumConfig)}


def default_out(config: TrajectoryConfig) -> Path:
    return Path("runs") / f"{config.recipe}-seed{config.seed}"


# ---------------------------------------------------------------- data, env and model


def load_data(config: TrajectoryConfig, *, progress: bool = False) -> dict:
    """The offline dataset (observations, actions, rewards, terminals, timeouts; goals for the mazes)."""
    if config.dataset in trajectory_data.MAZES:
        return trajectory_data.load_maze_dataset(config.dataset, steps=config.data_steps or None,
                                                 seed=config.data_seed, progress=progress)
    if config.dataset == "pendulum":
        return trajectory_data.generate_pendulum_dataset(steps=config.data_steps or trajectory_data.PENDULUM_STEPS,
                                                         seed=config.data_seed)
    return trajectory_data.load_offline_dataset(config.data_path)


def _is_maze(env_id: str) -> bool:
    return env_id.startswith("PointMaze_")


def planner_settings(config: TrajectoryConfig, env) -> PlannerSettings:
    """The planner settings of ``config`` for ``env`` (its spaces give the sizes and the action box)."""
    env_id = config.env_id_or_default
    space = env.observation_space
    obs_space = space["observation"] if hasattr(space, "spaces") and "observation" in space.spaces else space
    maze = _is_maze(env_id)
    options = dict(env_id=env_id, obs_dim=int(np.prod(obs_space.shape)), act_dim=int(np.prod(env.action_space.shape)),
                   horizon=config.horizon, action_low=tuple(float(v) for v in env.action_space.low.reshape(-1)),
                   action_high=tuple(float(v) for v in env.action_space.high.reshape(-1)),
                   env_kwargs=dict(MAZE_KWARGS) if maze else {}, max_episode_steps=config.max_episode_steps,
                   tracking=config.tracking or ("pd" if maze else "inverse" if config.inverse_steps else "actions"),
                   kp=config.kp, kd=config.kd,
                   replan_every=config.replan_every, num_plans=config.num_plans,
                   guidance_scale=config.guidance_scale, conditioned=config.conditioned, sampler=config.sampler,
                   sample_steps=config.sample_steps)
    if maze:  # (x, y, vx, vy): the goal fixes x, y; the force pushes x, y
        options.update(goal_dims=(0, 1), rest_dims=(2, 3) if config.goal_velocity == "zero" else (),
                       position_dims=(0, 1), velocity_dims=(2, 3))
    return PlannerSettings(**options)


def _check_env(config: TrajectoryConfig, data: dict):
    """The run's env, checked against the data's sizes (an unknown id is a ValueError)."""
    env = make_env(config.env_id_or_default, env_kwargs=MAZE_KWARGS if _is_maze(config.env_id_or_default) else None)
    settings = planner_settings(config, env)
    obs_dim, act_dim = np.asarray(data["observations"]).shape[1], np.asarray(data["actions"]).shape[1]
    if (obs_dim, act_dim) != (settings.obs_dim, settings.act_dim):
        env.close()
        raise ValueError(f"the data has {obs_dim}-d observations and {act_dim}-d actions, but {settings.env_id} has "
                         f"{settings.obs_dim} and {settings.act_dim}; give the env_id the data was recorded in")
    return env, settings


def make_trajectory_schedule(config: TrajectoryConfig):
    if config.schedule == "edm":
        return EDM(sigma_data=config.sigma_data, p_mean=config.p_mean, p_std=config.p_std)
    return make_schedule(config.schedule, config.sigma_data)


def build_model(config: TrajectoryConfig, dim: int, cond_dim: int = 0) -> Precond:
    """The untrained denoiser over ``(B, D + K, H)`` (the U-Net's layout; ``K = cond_dim`` channels
    of known values for a conditioned model); weights from ``config.seed`` only."""
    schedule = make_trajectory_schedule(config)
    overrides = {"embedding": noise_embedding(schedule)}
    if config.width:
        overrides["base_channels"] = config.width
    unet_config = backbone_config(dim + cond_dim, config.horizon, config.preset, **overrides)
    return seeded_model(lambda: UNet1D(unet_config), config.seed, config.prediction, schedule, config.sigma_data)


def read_config(run_dir: str | os.PathLike) -> TrajectoryConfig:
    return config_from_saved(run_dir, load_config(run_dir)["config"], CONFIGS, "a trajectory")


def load_run(run_dir: str | os.PathLike, device=None) -> tuple[Precond, TrajectoryConfig]:
    model, saved = from_pretrained(run_dir, device=device)
    return model, config_from_saved(run_dir, saved, CONFIGS, "a trajectory")


# ---------------------------------------------------------------- train


def train(config: TrajectoryConfig = PointMazeUMazeConfig(), out: str | os.PathLike | None = None, *,
          progress: bool = False) -> Path:
    """Make (or read) the data, train the denoiser, then the value model (``value_steps``) and the
    behaviour-cloning baseline (``bc_steps``), and evaluate the planner in the env. The run folder
    gets config.json, model/ema.safetensors, value_model.*, bc_policy.*, metrics.jsonl,
    checkpoints/, eval.json and plan.png/.json (the evaluation's paths)."""
    run_dir = Path(out) if out is not None else default_out(config)
    data = load_data(config, progress=progress)
    env, settings = _check_env(config, data)
    env.close()
    rows = step_rows(data)  # (N, D)
    normalizer = Normalizer.fit(rows, config.normalization)
    z = torch.from_numpy(np.asarray(normalizer.encode(rows.astype(np.float64)), np.float32))  # (N, D)
    starts = torch.from_numpy(trajectory_data.window_starts(data, config.horizon)).long()
    if len(starts) < config.batch_size:
        raise ValueError(f"the data holds {len(starts)} windows of {config.horizon} steps, fewer than batch_size "
                         f"{config.batch_size}; record more data or shorten the horizon")
    known_mask = condition_mask(config.horizon, rows.shape[1], settings.obs_dim, goal_dims=settings.goal_dims,
                                rest_dims=settings.rest_dims) if config.conditioned else None
    model = build_model(config, rows.shape[1], 0 if known_mask is None else int(known_mask.sum()))
    loss_fn = WindowLoss(z, config.horizon, loss_weighting(config.weighting, config.sigma_data), known_mask)
    run_dir.mkdir(parents=True, exist_ok=True)
    with threads_of(config):
        trainer = Trainer(model, engine_config(config), run_dir=run_dir, loss_fn=loss_fn, progress=progress,
                          device=device_of(config))
        if not config.resume and trainer.dist.is_main:
            remove_checkpoints(run_dir)
        result = trainer.fit(ShuffledBatches({"start": starts}, config.batch_size, seed=config.seed),
                             resume=config.resume)
        if not trainer.dist.is_main:
            barrier(trainer.dist)
            return run_dir
        saved = {"recipe": config.recipe, **asdict(config), "normalizer": normalizer.to_dict(),
                 "planner": settings.to_dict(), "data": _data_summary(data, starts)}
        start = time.perf_counter()
        if config.value_steps:
            value, stats = _train_value(config, data, loss_fn, starts, result.ema.schedule, progress=progress)
            save_value_model(value, run_dir, stats)
        else:
            (run_dir / f"{VALUE_FILE}.safetensors").unlink(missing_ok=True)
        value_seconds = time.perf_counter() - start
        start = time.perf_counter()
        shaper = BCPolicy(None, settings, normalizer)
        for name, steps, make in ((BC_FILE, config.bc_steps, _bc_data), (INVERSE_FILE, config.inverse_steps,
                                                                        _inverse_data)):
            if steps:
                net, info = _train_mlp(*make(data, settings, shaper), steps=steps, seed=config.seed + 2,
                                       desc=name.replace("_", " "), progress=progress)
                save_mlp(net, run_dir, name, info)
            else:
                (run_dir / f"{name}.safetensors").unlink(missing_ok=True)
        mlp_seconds = time.perf_counter() - start
        save_pretrained(result.model, saved, run_dir, ema=result.ema)
        report = plan(run_dir, episodes=config.eval_episodes, seed=0, progress=progress)
    write_plan(report, run_dir / "plan", run_dir)
    report = dict(report)
    report.update(train_seconds=round(result.seconds, 2), value_seconds=round(value_seconds, 2),
                  mlp_seconds=round(mlp_seconds, 2), steps=result.step, final_loss=final_loss(run_dir))
    atomic_write_json(run_dir / "eval.json", report)
    barrier(trainer.dist)
    return run_dir


def _data_summary(data: dict, starts: torch.Tensor) -> dict:
    rewards = np.asarray(data["rewards"], np.float64)
    return {"steps": len(rewards), "episodes": len(trajectory_data.episodes(data)), "windows": len(starts),
            "mean_reward": float(rewards.mean())}


def _train_value(config: TrajectoryConfig, data: dict, loss_fn: WindowLoss, starts: torch.Tensor, schedule, *,
                 progress: bool = False) -> tuple[ValueModel, dict]:
    """The value model: regress the normalised discounted return from each window's first step
    (Diffuser's value targets) on windows noised at the schedule's training sigmas (MSE, AdamW)."""
    ends = np.asarray(data["terminals"], bool) | np.asarray(data["timeouts"], bool)
    returns = returns_to_go(data["rewards"], ends, config.discount)[starts.numpy()]
    stats = {"mean": float(returns.mean()), "std": float(returns.std() or 1.0), "discount": config.discount}
    targets = torch.from_numpy((returns - stats["mean"]) / stats["std"]).float()
    value = build_value_model(loss_fn.rows.shape[1], config.horizon, schedule, preset=config.value_preset,
                              seed=config.seed + 1)
    generator = torch.Generator().manual_seed(config.seed + 1)
    optimizer = torch.optim.AdamW(value.parameters(), lr=config.lr)
    lr_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.value_steps, eta_min=config.lr / 10)
    batch = min(config.batch_size, len(starts))
    value.train()
    with progress_bar(config.value_steps, "value model", progress) as bar:
        for _ in range(config.value_steps):
            pick = torch.randint(len(starts), (batch,), generator=generator)
            x0 = loss_fn.windows(starts[pick])  # (B, H, D)
            sigma = schedule.sample_sigmas(batch, generator=generator).to(x0)
            x = x0 + sigma[:, None, None] * torch.randn(x0.shape, generator=generator)
            loss = torch.nn.functional.mse_loss(value(x, sigma), targets[pick])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            lr_schedule.step()
            bar.update(1)
    stats["final_loss"] = loss.item()
    return value.eval().requires_grad_(False), stats


def _bc_data(data: dict, settings: PlannerSettings, shaper: BCPolicy) -> tuple[np.ndarray, np.ndarray]:
    """Behaviour cloning's pairs: the observation (and, for goal envs, the goal in force: the data's
    ``goals``) -> the recorded action, normalised."""
    if settings.goal_dims and "goals" not in data:
        raise ValueError("goal-conditioned behaviour cloning needs the data's 'goals' field; set bc_steps=0")
    return shaper.inputs(data["observations"], data.get("goals")), shaper.targets(data["actions"])


def _inverse_data(data: dict, settings: PlannerSettings, shaper: BCPolicy) -> tuple[np.ndarray, np.ndarray]:
    """Inverse dynamics' pairs ``(s_t, s_t+1) -> a_t`` inside episodes, normalised (Ajay et al. 2023)."""
    ends = np.asarray(data["terminals"], bool) | np.asarray(data["timeouts"], bool)
    keep = np.flatnonzero(~ends[:-1])  # t with t + 1 in the same episode
    observations = np.asarray(data["observations"], np.float64)
    encode = partial(shaper.normalizer.encode, dims=range(settings.obs_dim))
    inputs = np.concatenate([encode(observations[keep]), encode(observations[keep + 1])], axis=1)
    return inputs.astype(np.float32), shaper.targets(np.asarray(data["actions"])[keep])


def _train_mlp(inputs: np.ndarray, targets: np.ndarray, *, steps: int, seed: int, desc: str, progress: bool = False,
               batch_size: int = 256, width: int = 256, lr: float = 1e-3) -> tuple[BCNet, dict]:
    """Regress ``targets`` from ``inputs`` (normalised) with an MLP: MSE, AdamW, cosine decay to lr / 10."""
    x = torch.as_tensor(inputs, dtype=torch.float32)
    y = torch.as_tensor(np.asarray(targets), dtype=torch.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = BCNet(x.shape[1], y.shape[1], width)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr)
    lr_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr / 10)
    batch = min(batch_size, len(x))
    with progress_bar(steps, desc, progress) as bar:
        for _ in range(steps):
            pick = torch.randint(len(x), (batch,), generator=generator)
            loss = torch.nn.functional.mse_loss(net(x[pick]), y[pick])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            lr_schedule.step()
            bar.update(1)
    return net.eval().requires_grad_(False), {"final_loss": loss.item(), "steps": steps}


# ---------------------------------------------------------------- plan: the planner in the env


class PlanReport(dict):
    """The figures of :func:`plan` (JSON-able as a dict); ``paths`` holds what :func:`write_plan`
    draws (states and plans of the first episodes, the maze walls)."""

    paths: dict


def _reference(env, settings: PlannerSettings):
    """The controller that made the data, when the env is one this package makes data for."""
    if _is_maze(settings.env_id):
        return ControllerPolicy(trajectory_data.WaypointController(trajectory_data.maze_geometry(env)))
    if settings.env_id == trajectory_data.PENDULUM_ID:
        return ControllerPolicy(trajectory_data.SwingUpController())
    return None


def _figures(result: dict) -> dict:
    steps = result["steps_to_success"]
    return {"success_rate": float(np.mean(result["successes"])) if result["has_success"] else None,
            "mean_return": float(np.mean(result["returns"])),
            "mean_steps_to_success": float(np.mean(steps)) if steps else None}


def plan(run_dir: str | os.PathLike, *, episodes: int = 50, seed: int = 0, sampler: str | None = None,
         steps: int | None = None, progress: bool = False) -> PlanReport:
    """Run the run's planner for ``episodes`` episodes in its env and the baselines on the same
    episode starts (drawn from ``seed``); see the module docstring for the figures."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if sampler is not None and sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    config = read_config(run_dir)
    with threads_of(config):
        planner = Planner.from_run(run_dir, device=sampling_device(config), sampler=sampler, steps=steps, seed=seed)
        settings = planner.settings
        env = planner.make_env()
        try:
            starts = episode_starts(env, episodes, seed)
            limit = settings.max_episode_steps or env.spec.max_episode_steps
            record = min(episodes, PLOTTED_EPISODES)
            policies = {"planner": planner, "reference": _reference(env, settings),
                        "random": RandomPolicy(settings.action_low, settings.action_high, seed=seed)}
            bc = load_mlp(run_dir, BC_FILE)
            if bc is not None:
                policies["bc"] = BCPolicy(bc[0], settings, planner.normalizer)
            results = {}
            with progress_bar(len(policies), "plan and baselines", progress) as bar:
                for name, policy in policies.items():
                    if policy is not None:
                        results[name] = run_episodes(env, policy, starts, max_steps=limit, record=record)
                    bar.update(1)
        finally:
            env.close()
    figures = {name: _figures(result) for name, result in results.items()}
    random_return = figures["random"]["mean_return"]
    reference_return = figures["reference"]["mean_return"] if "reference" in figures else None
    for values in figures.values():
        values["normalised_score"] = (None if reference_return is None else
                                      normalised_score(values["mean_return"], random_return, reference_return))
    calls = planner.denoiser_calls
    report = PlanReport({
        "recipe": config.recipe, "env_id": settings.env_id, "episodes": episodes, "max_steps": int(limit),
        "seed": seed, "sampler": settings.sampler, "sample_steps": settings.sample_steps,
        "tracking": settings.tracking, "replan_every": settings.replan_every, "num_plans": settings.num_plans,
        "guidance_scale": settings.guidance_scale if planner.value is not None else None,
        **figures["planner"],
        "plan_seconds": float(np.median(planner.plan_seconds)), "denoiser_calls_per_plan": float(np.mean(calls)),
        "plans_per_episode": len(calls) / episodes, "threads": torch.get_num_threads(),
    })
    for name in ("reference", "random", "bc"):
        if name in figures:
            report[name] = figures[name]
    report.paths = {"planner": results["planner"]["paths"], "reference": results.get("reference", {}).get("paths"),
                    "env_id": settings.env_id, "walls": _walls(settings)}
    return report


def _walls(settings: PlannerSettings) -> list | None:
    if not _is_maze(settings.env_id):
        return None
    env = make_env(settings.env_id, env_kwargs=settings.env_kwargs)
    try:
        return trajectory_data.maze_geometry(env).walls.tolist()
    finally:
        env.close()


def write_plan(report: dict, stem: str | os.PathLike, run_dir: str | os.PathLike | None = None) -> list[Path]:
    """``STEM.json`` (the figures) and ``STEM.png``: for the mazes, planned (dashed) and executed
    (solid) paths of the first episodes over the walls; otherwise the executed angle / first
    feature over time beside the reference controller's."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    figures = {key: value for key, value in report.items()}
    json_path = atomic_write_json(stem.with_name(stem.name + ".json"), figures)
    drawn = getattr(report, "paths", None)
    if drawn:
        png = stem.with_name(stem.name + ".png")
        atomic_write_bytes(png, _plan_png(drawn, _plan_title(report)))
        paths.append(png)
    return [*paths, json_path]


def _maze_axes(ax, walls, scaling: float = 1.0) -> None:
    from matplotlib.patches import Rectangle

    walls = np.asarray(walls, bool)
    rows, cols = walls.shape
    for r, c in zip(*np.nonzero(walls)):
        x0, y0 = (c - cols / 2) * scaling, (rows / 2 - r - 1) * scaling
        ax.add_patch(Rectangle((x0, y0), scaling, scaling, color="0.75", linewidth=0))
    ax.set_xlim(-cols * scaling / 2, cols * scaling / 2)
    ax.set_ylim(-rows * scaling / 2, rows * scaling / 2)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _angle_from_top(states: np.ndarray) -> np.ndarray:
    """Pendulum's angle from upright in [0, pi] from its ``(cos, sin, ...)`` states (else the first feature)."""
    return np.abs(np.arctan2(states[:, 1], states[:, 0])) if states.shape[1] >= 2 else states[:, 0]


def _plan_png(drawn: dict, title: str, size: float = 2.6) -> bytes:
    """Up to 8 panels: over the maze walls, the plans (dashed) and the path (solid) from the start
    (green) to the goal (red star); without walls, the angle from upright over time of the
    executed path beside the reference controller's from the same start."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    episodes = drawn["planner"]
    count = max(1, len(episodes))
    ncol = min(4, count)
    nrow = (count + ncol - 1) // ncol
    figure = Figure(figsize=(size * ncol, size * nrow), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrow, ncol, squeeze=False).reshape(-1)
    reference = drawn.get("reference") or []
    for index, ax in enumerate(axes):
        if index >= len(episodes):
            ax.set_axis_off()
            continue
        episode = episodes[index]
        states = episode["states"]
        if drawn.get("walls") is not None:
            _maze_axes(ax, drawn["walls"])
            for planned in episode["plans"]:
                ax.plot(planned[:, 0], planned[:, 1], "--", color="tab:orange", linewidth=1)
            ax.plot(states[:, 0], states[:, 1], color="tab:blue", linewidth=1.2)
            ax.plot(*states[0, :2], "o", color="tab:green", markersize=5)
            if episode["goal"] is not None:
                ax.plot(*episode["goal"], "*", color="tab:red", markersize=9)
        else:
            ax.plot(_angle_from_top(states), color="tab:blue", linewidth=1.2, label="planner")
            if index < len(reference):
                ax.plot(_angle_from_top(reference[index]["states"]), color="0.5", linewidth=1, label="reference")
            ax.set_ylim(-0.1, np.pi + 0.1)
            ax.set_xlabel("step", fontsize=7)
            ax.set_ylabel("angle from upright", fontsize=7)
            ax.legend(fontsize=6)
        ax.set_title(f"episode {index}", fontsize=8)
    figure.suptitle(title, fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _plan_title(report: dict) -> str:
    parts = [f"{report.get('env_id')}: "]
    parts.append("plans (dashed), executed paths (solid)" if report.get("success_rate") is not None
                 else "the planner beside the reference controller")
    if report.get("success_rate") is not None:
        parts.append(f"; success {report['success_rate']:.0%}")
    if report.get("mean_return") is not None:
        parts.append(f"; mean return {report['mean_return']:.1f}")
    return "".join(parts)


# ---------------------------------------------------------------- sample and evaluate


def _check_not_conditional(config: TrajectoryConfig, label, guidance) -> None:
    if label is not None or guidance is not None:
        raise ValueError(f"{config.recipe} is not class-conditional, so it takes no label or guidance; it is "
                         f"conditioned by inpainting its start (and goal) state")


def sample(run_dir: str | os.PathLike, *, num: int, sampler: str | None = None, steps: int | None = None,
           seed: int = 0, progress: bool = False, label: int | None = None, guidance: float | None = None) -> dict:
    """``num`` plans from the starts (and goals) of ``num`` evaluation episodes drawn from ``seed``:
    ``{"observations" (num, H, S), "actions" (num, H, A), "starts" (num, S), "goals" (num, G) or
    None, "walls", "env_id", "seconds"}``."""
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    config = read_config(run_dir)
    _check_not_conditional(config, label, guidance)
    with threads_of(config):
        planner = Planner.from_run(run_dir, device=sampling_device(config), sampler=sampler, steps=steps, seed=seed)
        s = planner.settings
        states, goals = _episode_states(planner, num, seed)
        start_time = time.perf_counter()
        with sampling_progress(s.sample_steps, f"sample ({s.sampler})", progress) as callback:
            x, _ = planner.sample(np.stack(states), np.stack(goals) if s.goal_dims else None, callback=callback)
    rows = planner.normalizer.decode(x.double().cpu()).numpy()
    return {"observations": rows[..., :s.obs_dim], "actions": rows[..., s.obs_dim:], "starts": np.stack(states),
            "goals": np.stack(goals) if s.goal_dims else None, "walls": _walls(s), "env_id": s.env_id,
            "seconds": time.perf_counter() - start_time}


def _episode_states(planner: Planner, num: int, seed: int) -> tuple[list, list]:
    """The first observations (and goals) of ``num`` evaluation episodes drawn from ``seed``."""
    env = planner.make_env()
    try:
        states, goals = [], []
        for start in episode_starts(env, num, seed):
            obs, _ = env.reset(seed=start["seed"], options=start["options"])
            state, goal = split_observation(obs, planner.settings.obs_dim)
            states.append(state)
            goals.append(goal)
    finally:
        env.close()
    return states, goals


CALIBRATION_SEED = 1  # episode starts for `multidiff calibrate`; sample, plan and eval default to seed 0


def calibration_problem(run_dir: str | os.PathLike, num: int):
    """What ``multidiff calibrate`` calibrates: the planner's denoiser as ``sample`` and ``plan`` call
    it (the conditioned network, value guidance, the start and goal inpainted), on plans from the
    starts and goals of ``num`` episodes of seed CALIBRATION_SEED (not those ``plan`` measures by
    default)."""
    from ..train.calibration import CalibrationProblem

    config = read_config(run_dir)
    planner = Planner.from_run(run_dir, device=sampling_device(config))
    states, goals = _episode_states(planner, num, CALIBRATION_SEED)
    known, mask = planner.constraints(np.stack(states), np.stack(goals) if planner.settings.goal_dims else None)
    return CalibrationProblem(planner.model, planner.calibration_denoiser(mask[0]), tuple(known.shape), known, None)


def write_samples(drawn: dict, stem: str | os.PathLike, run_dir: str | os.PathLike | None = None) -> list[Path]:
    """``STEM.png`` (the plans over the maze, or their first two features) and ``STEM.npz`` (the arrays)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    episodes = [{"states": obs, "goal": None if drawn["goals"] is None else drawn["goals"][i], "plans": []}
                for i, obs in enumerate(drawn["observations"][:PLOTTED_EPISODES])]
    png = stem.with_name(stem.name + ".png")
    atomic_write_bytes(png, _plan_png({"planner": episodes, "walls": drawn.get("walls")},
                                      f"{drawn.get('env_id')}: sampled plans from start (green) to goal (red)"
                                      if drawn.get("walls") is not None else f"{drawn.get('env_id')}: sampled plans"))
    arrays = {key: np.asarray(drawn[key], np.float32) for key in ("observations", "actions", "starts")}
    if drawn.get("goals") is not None:
        arrays["goals"] = np.asarray(drawn["goals"], np.float32)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    npz = atomic_write(stem.with_name(stem.name + ".npz"), write)
    return [png, npz]


def evaluate(run_dir: str | os.PathLike, *, num: int | None = None, sampler: str | None = None,
             steps: int | None = None, seed: int = 0, progress: bool = False, guidance: float | None = None) -> dict:
    """:func:`plan` with ``num`` episodes (default: the run's ``eval_episodes``), as a JSON-able dict."""
    config = read_config(run_dir)
    _check_not_conditional(config, None, guidance)
    return dict(plan(run_dir, episodes=config.eval_episodes if num is None else num, seed=seed, sampler=sampler,
                     steps=steps, progress=progress))


inpaint_test = None


__all__ = ["CONFIGS", "PendulumConfig", "PlanReport", "PointMazeLargeConfig", "PointMazeMediumConfig",
           "PointMazeUMazeConfig", "TrajectoryConfig", "build_model", "evaluate", "inpaint_test", "load_data",
           "load_run", "plan", "planner_settings", "read_config", "sample", "train", "write_plan", "write_samples"]
