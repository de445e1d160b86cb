"""The trajectory recipes' settings, their data, env and denoiser, and the side networks
(value model, behaviour cloning, inverse dynamics) trained after it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import numpy as np
import torch

from ...adapters.trajectory import (MAZE_KWARGS, MAZES, NORMALIZERS, PENDULUM_ID, TRACKING, TRAJECTORY_PRESETS, BCNet,
                                   BCPolicy, PlannerSettings, ValueModel, WindowLoss, backbone_config, build_mlp,
                                   build_value_model, is_maze, make_env, returns_to_go)
from ...backbones import UNet1D
from ...core.precond import Precond
from ...core.schedules import EDM
from ...data import trajectory as trajectory_data
from ...train import from_pretrained, load_config
from ...train.side import fit
from ..base import ScalableConfig
from ..common import check_fields, config_from_saved, make_schedule, noise_embedding, seeded_model

DATASETS = ("umaze", "medium", "large", "pendulum", "file")
GOAL_VELOCITIES = ("zero", "free")
PLOTTED_EPISODES = 8


@dataclass(frozen=True)
class TrajectoryConfig(ScalableConfig):
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
    replan_every: int = 16  # steps between plans (each must arrive by the current deadline); 0: plan once per goal
    #                         and track it open loop (U-Maze: success 0.98 against 1.0 with 16)
    num_plans: int = 16  # plans sampled at once (one batch); the best by the task's score is executed
    guidance_scale: float = 0.0  # value guidance scale (needs value_steps > 0)
    guidance_sigma_max: float = 0.0  # guide only at noise levels sigma <= this; 0: at every level
    conditioned: bool = True  # the denoiser also takes the start (and goal) as input channels; false: Diffuser's
    #                           unconditional training (both condition by inpainting at sampling)
    # goal envs: train on arrival steps k in [arrival_min, horizon - 1] (the goal at k, at rest after it) and
    # execute the earliest feasible of num_plans plans; 0: the goal at the last step (Diffuser's)
    arrival_min: int = 4
    warm_start: int = 0  # replanning: sampler steps run from the previous plan (0: every plan from noise; U-Maze:
    #                      8 warm steps halved the calls but lost 6 % of the goals)
    max_episode_steps: int = 0  # 0: the env's own limit (U-Maze 300, Medium 600, Large 800, Pendulum 200)
    # mazes: the denoised plans' positions in a wall move this far inside the nearest free cell (at every noise
    # level, no extra network call); 0: off
    wall_margin: float = 0.0
    retries: int = 0  # when every plan of a batch is infeasible, draw up to this many more batches; 0: never
    # pd tracking of goals: follow each plan's route re-timed to the fastest motion within this fraction of the
    # data's top speed and acceleration, the earliest re-timed arrival first (adapters.trajectory.retime); 0: off
    # (the maze recipes: 1.0)
    retime: float = 0.0
    # value model and the behaviour-cloning baseline
    value_steps: int = 0  # training steps of the value model; 0: none
    value_preset: str = "tiny"  # its U-Net size (a TRAJECTORY_PRESETS name); guidance runs it forward and back
    discount: float = 0.99  # of the value targets (discounted return from each window's start)
    bc_steps: int = 3000  # training steps of the behaviour-cloning MLP; 0: no BC baseline
    inverse_steps: int = 0  # training steps of an inverse dynamics MLP (s_t, s_t+1) -> a_t; 0: none
    # model
    preset: str = "small"  # a multidiff.adapters.trajectory.TRAJECTORY_PRESETS size
    p_mean: float = 0.0  # EDM training sigmas: log-normal(p_mean, p_std); a plan's route is settled at sigma ~ 0.5-5,
    p_std: float = 1.2  # above EDM's image default (p_mean -1.2)
    # training (pointmaze_umaze: ~0.36 s a step at one thread, ~18 min; ~11 min on 2 cores)
    lr: float = 2e-3
    warmup_steps: int = 100
    ema_decay: float = 0.998
    # sampling and evaluation
    sample_steps: int = 16
    eval_episodes: int = 50
    sample_every: int = 0

    def __post_init__(self):
        super().__post_init__()
        check_fields(self, {"dataset": DATASETS, "normalization": NORMALIZERS, "preset": TRAJECTORY_PRESETS,
                            "value_preset": TRAJECTORY_PRESETS, "goal_velocity": GOAL_VELOCITIES},
                     at_least_one=("eval_episodes", "horizon", "num_plans"),
                     non_negative=("data_steps", "data_seed", "replan_every", "max_episode_steps",
                                   "value_steps", "bc_steps", "inverse_steps", "retries"),
                     positive=("p_std",))
        if not 0 <= self.retime <= 1:
            raise ValueError(f"retime must be in [0, 1] (a fraction of the data's speed; 0: off), got {self.retime}")
        if self.guidance_sigma_max < 0 or self.wall_margin < 0:
            raise ValueError(f"need guidance_sigma_max and wall_margin >= 0, got {self.guidance_sigma_max}, "
                             f"{self.wall_margin}")
        if self.tracking and self.tracking not in TRACKING:
            raise ValueError(f"unknown tracking {self.tracking!r}; choose one of: {', '.join(TRACKING)} (or '' for "
                             f"the env's default)")
        if not 0 < self.discount <= 1 or self.guidance_scale < 0:
            raise ValueError(f"need discount in (0, 1] and guidance_scale >= 0, got {self.discount}, "
                             f"{self.guidance_scale}")
        if self.guidance_scale > 0 and not self.value_steps:
            raise ValueError(f"guidance_scale={self.guidance_scale} needs a value model; set value_steps > 0")
        for name in ("preset", "value_preset"):
            levels = len(TRAJECTORY_PRESETS[getattr(self, name)]["channel_mults"])
            if self.horizon % 2 ** (levels - 1):
                raise ValueError(f"horizon {self.horizon} must be divisible by {2 ** (levels - 1)} for {name} "
                                 f"{getattr(self, name)!r} ({levels} U-Net levels)")
        if self.arrival_min and not (self.conditioned and self.arrival_min < self.horizon):
            raise ValueError(f"arrival_min={self.arrival_min} needs conditioned=true and arrival_min < horizon "
                             f"({self.horizon}); set arrival_min=0 for the goal at the last step")
        if not 0 <= self.warm_start <= self.sample_steps:
            raise ValueError(f"warm_start must be in [0, sample_steps={self.sample_steps}], got {self.warm_start}")
        if self.tracking == "inverse" and not self.inverse_steps:
            raise ValueError("tracking=inverse needs an inverse dynamics model; set inverse_steps > 0")
        if self.dataset == "file" and not (self.data_path and self.env_id):
            raise ValueError("dataset=file needs data_path=FILE.npz (your offline data) and env_id=ID (the gymnasium "
                             "env it comes from, to plan in)")

    @property
    def env_id_or_default(self) -> str:
        if self.env_id:
            return self.env_id
        if self.dataset in MAZES:
            return MAZES[self.dataset]
        return PENDULUM_ID


@dataclass(frozen=True)
class PointMazeUMazeConfig(TrajectoryConfig):
    recipe: ClassVar[str] = "pointmaze_umaze"
    # 50 episodes with a replan every 16 steps took 169 s of the 20-minute budget (the denoiser 1013 s);
    # `multidiff plan RUN --episodes 50` measures more
    eval_episodes: int = 25
    # routes re-timed to the data's top speed (chosen on Medium): 46 steps to the goal, not 51 (seed 0 and held-out
    # seed 1; the data's controller 54-56, behaviour cloning 59-60); docs/rl.md
    retime: float = 1.0


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
    # the CPU-sized run drew every plan of a batch through a wall in some episodes; plans kept 0.2 m off the walls
    # (twice the point's radius) reached the goal in 1.00 / 0.90 of 20 episodes (seeds 0 / 1; 0.1 m: 0.95 / 0.85,
    # none: 0.90 / 0.75), held-out seed 2 in docs/rl.md
    wall_margin: float = 0.2
    # the sampled plans linger, then rush; their routes re-timed to the data's top speed and acceleration arrive
    # in 80 steps, not 168 (success 1.00 / 0.96, score 104.8 / 83.2, behaviour cloning 96.3; docs/rl.md)
    retime: float = 1.0


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
    # value guidance did not beat no guidance beyond the seed-to-seed spread at 0.03 or 1, at every noise level or
    # only at sigma <= 1 (docs/rl.md, 3 seeds): the value model ranks the 16 plans, it does not steer them
    guidance_scale: float = 0.0
    value_steps: int = 3000
    discount: float = 0.97
    inverse_steps: int = 3000
    arrival_min: int = 0  # no goal: plans are ranked by value
    steps: int = 4000
    sample_steps: int = 8
    eval_episodes: int = 10


CONFIGS: dict[str, type[TrajectoryConfig]] = {cls.recipe: cls for cls in (
    PointMazeUMazeConfig, PointMazeMediumConfig, PointMazeLargeConfig, PendulumConfig)}
DESCRIPTIONS = {
    "pointmaze_umaze": "Diffuser-style trajectory planning on gymnasium-robotics PointMaze U-Maze, temporal U-Net, "
                       "plans that arrive early (the earliest feasible of 16), CPU, ~18 min",
    "pointmaze_medium": "trajectory planning on PointMaze Medium, sized for one GPU",
    "pointmaze_large": "trajectory planning on PointMaze Large, sized for one GPU",
    "pendulum": "reward-maximising planning on gymnasium Pendulum, 16 plans ranked by a value model, CPU",
}


# ---------------------------------------------------------------- data, env and model


def load_data(config: TrajectoryConfig, *, progress: bool = False) -> dict:
    """The offline dataset (observations, actions, rewards, terminals, timeouts; goals for the mazes)."""
    if config.dataset in MAZES:
        return trajectory_data.load_maze_dataset(config.dataset, steps=config.data_steps or None,
                                                 seed=config.data_seed, progress=progress)
    if config.dataset == "pendulum":
        return trajectory_data.generate_pendulum_dataset(steps=config.data_steps or trajectory_data.PENDULUM_STEPS,
                                                         seed=config.data_seed)
    return trajectory_data.load_offline_dataset(config.data_path)


def planner_settings(config: TrajectoryConfig, env) -> PlannerSettings:
    """The planner settings of ``config`` for ``env`` (its spaces give the sizes and the action box)."""
    env_id = config.env_id_or_default
    space = env.observation_space
    obs_space = space["observation"] if hasattr(space, "spaces") and "observation" in space.spaces else space
    maze = is_maze(env_id)
    options = dict(env_id=env_id, obs_dim=int(np.prod(obs_space.shape)), act_dim=int(np.prod(env.action_space.shape)),
                   horizon=config.horizon, action_low=tuple(float(v) for v in env.action_space.low.reshape(-1)),
                   action_high=tuple(float(v) for v in env.action_space.high.reshape(-1)),
                   env_kwargs=dict(MAZE_KWARGS) if maze else {}, max_episode_steps=config.max_episode_steps,
                   tracking=config.tracking or ("pd" if maze else "inverse" if config.inverse_steps else "actions"),
                   kp=config.kp, kd=config.kd,
                   replan_every=config.replan_every, num_plans=config.num_plans,
                   guidance_scale=config.guidance_scale, guidance_sigma_max=config.guidance_sigma_max,
                   conditioned=config.conditioned, sampler=config.sampler,
                   sample_steps=config.sample_steps, warm_start=config.warm_start, retries=config.retries)
    if maze:  # (x, y, vx, vy): the goal fixes x, y; the force pushes x, y
        options.update(goal_dims=(0, 1), rest_dims=(2, 3) if config.goal_velocity == "zero" else (),
                       position_dims=(0, 1), velocity_dims=(2, 3), arrival_min=config.arrival_min,
                       wall_margin=config.wall_margin)
    return PlannerSettings(**options)


def _check_env(config: TrajectoryConfig, data: dict):
    """The run's env, checked against the data's sizes (an unknown id is a ValueError)."""
    env = make_env(config.env_id_or_default, env_kwargs=MAZE_KWARGS if is_maze(config.env_id_or_default) else None)
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
    batch = min(config.batch_size, len(starts))

    def batch_loss(step: int) -> torch.Tensor:
        pick = torch.randint(len(starts), (batch,), generator=generator)
        x0 = loss_fn.windows(starts[pick])  # (B, H, D)
        sigma = schedule.sample_sigmas(batch, generator=generator).to(x0)
        x = x0 + sigma[:, None, None] * torch.randn(x0.shape, generator=generator)
        return torch.nn.functional.mse_loss(value(x, sigma), targets[pick])

    value.train()
    stats["final_loss"] = fit(value, batch_loss, steps=config.value_steps, lr=config.lr, decay="cosine_to_tenth",
                              desc="value model", progress=progress)
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
    net = build_mlp(x.shape[1], y.shape[1], width=width, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    batch = min(batch_size, len(x))

    def batch_loss(step: int) -> torch.Tensor:
        pick = torch.randint(len(x), (batch,), generator=generator)
        return torch.nn.functional.mse_loss(net(x[pick]), y[pick])

    final = fit(net, batch_loss, steps=steps, lr=lr, decay="cosine_to_tenth", desc=desc, progress=progress)
    return net.eval().requires_grad_(False), {"final_loss": final, "steps": steps}
