"""Trajectory recipes: planning by diffusion over whole state-action trajectories (Diffuser,
Janner et al. 2022) on gymnasium environments.

===================  ==================================================================
``pointmaze_umaze``  the CPU default: gymnasium-robotics' PointMaze U-Maze, data of a
                     noisy waypoint controller (multidiff.data.trajectory), horizon 128;
                     plans arrive at a chosen step (16 in a batch, the earliest
                     feasible executed, a replan every 16 steps), a PD law tracks it
``pointmaze_medium`` the Medium maze, horizon 256, sized for a GPU
``pointmaze_large``  the Large maze, horizon 384, sized for a GPU
``pendulum``         gymnasium's Pendulum-v1, reward maximising: mixed random and
                     swing-up data, a value model ranks 16 plans (its gradient guidance
                     is off: it measured no gain), receding horizon
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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ...adapters.trajectory import (BC_FILE, INVERSE_FILE, VALUE_FILE, ArrivalWindowLoss, BCPolicy, Normalizer,
                                   PlannerSettings, WindowLoss, arrival_channels, condition_mask, motion_limits,
                                   rest_row, save_mlp, save_value_model, step_rows)
from ...core.precond import Precond
from ...data import trajectory as trajectory_data
from ..base import Domain
from ..common import loss_weighting, threads_of
from ..registry import register
from .model import (CONFIGS, DESCRIPTIONS, PendulumConfig, PointMazeLargeConfig,
                    PointMazeMediumConfig, PointMazeUMazeConfig, TrajectoryConfig, _bc_data, _check_env,
                    _data_summary, _inverse_data, _train_mlp, _train_value, build_model, load_data, load_run,
                    make_trajectory_schedule, planner_settings, read_config)
from .planning import PlanReport, calibration_problem, evaluate, plan, sample, write_plan, write_samples



# ---------------------------------------------------------------- the domain


@dataclass
class Prepared:
    """The offline data made ready for training: the raw dataset, the env's planner settings, the
    normaliser, the normalised rows ``z (N, D)``, the window starts, the known-value mask of a
    conditioned model and the window loss."""

    data: dict
    settings: PlannerSettings
    normalizer: Normalizer
    z: torch.Tensor
    starts: torch.Tensor
    known_mask: torch.Tensor | None
    loss_fn: WindowLoss


class Trajectories(Domain):
    name = "a trajectory"
    configs = CONFIGS
    examples = "windows"

    def load_data(self, config: TrajectoryConfig, *, progress: bool = False) -> Prepared:
        data = load_data(config, progress=progress)
        env, settings = _check_env(config, data)
        env.close()
        settings = replace(settings, max_step_change=tuple(float(v) for v in
                                                           trajectory_data.step_change_limits(data)))
        if settings.tracking == "pd":  # how fast the data's point speeds up, for re-timed plans
            accel, step_seconds = motion_limits(data["observations"], trajectory_data.episodes(data),
                                                settings.position_dims, settings.velocity_dims)
            settings = replace(settings, step_accel=accel, step_seconds=step_seconds)
        settings = replace(settings, retime=config.retime)  # (checked: it needs the limits above)
        rows = step_rows(data)  # (N, D)
        normalizer = Normalizer.fit(rows, config.normalization)
        z = torch.from_numpy(np.asarray(normalizer.encode(rows.astype(np.float64)), np.float32))  # (N, D)
        starts = torch.from_numpy(trajectory_data.window_starts(data, config.horizon)).long()
        if len(starts) < config.batch_size:
            raise ValueError(f"the data holds {len(starts)} windows of {config.horizon} steps, fewer than batch_size "
                             f"{config.batch_size}; record more data or shorten the horizon")
        weighting = loss_weighting(config.weighting, config.sigma_data)
        if settings.arrival_min and settings.goal_dims:  # the goal at a random step, at rest after it
            known_mask = None
            loss_fn = ArrivalWindowLoss(z, config.horizon, weighting, obs_dim=settings.obs_dim,
                                        goal_dims=settings.goal_dims, rest_dims=settings.rest_dims,
                                        rest=rest_row(normalizer), min_step=settings.arrival_min)
        else:
            known_mask = condition_mask(config.horizon, rows.shape[1], settings.obs_dim, goal_dims=settings.goal_dims,
                                        rest_dims=settings.rest_dims) if config.conditioned else None
            loss_fn = WindowLoss(z, config.horizon, weighting, known_mask)
        return Prepared(data, settings, normalizer, z, starts, known_mask, loss_fn)

    def build_model(self, config: TrajectoryConfig, prepared: Prepared) -> Precond:
        if isinstance(prepared.loss_fn, ArrivalWindowLoss):
            s = prepared.settings
            return build_model(config, prepared.z.shape[1], arrival_channels(s.obs_dim, s.goal_dims))
        cond_dim = 0 if prepared.known_mask is None else int(prepared.known_mask.sum())
        return build_model(config, prepared.z.shape[1], cond_dim)

    def training_set(self, config: TrajectoryConfig, prepared: Prepared) -> dict:
        return {"start": prepared.starts}

    def trainer_options(self, config: TrajectoryConfig, prepared: Prepared) -> dict:
        return {"loss_fn": prepared.loss_fn}

    def run_info(self, config: TrajectoryConfig, prepared: Prepared) -> dict:
        return {"normalizer": prepared.normalizer.to_dict(), "planner": prepared.settings.to_dict(),
                "data": _data_summary(prepared.data, prepared.starts)}

    def after_training(self, run_dir: Path, config: TrajectoryConfig, prepared: Prepared, ema: Precond, *,
                       progress: bool) -> dict:
        """The value model (``value_steps``), the behaviour-cloning and inverse-dynamics MLPs, then the
        planner in the env beside the baselines (plan.png/.json)."""
        data, settings = prepared.data, prepared.settings
        with threads_of(config):
            start = time.perf_counter()
            if config.value_steps:
                value, stats = _train_value(config, data, prepared.loss_fn, prepared.starts, ema.schedule,
                                            progress=progress)
                save_value_model(value, run_dir, stats)
            else:
                (run_dir / f"{VALUE_FILE}.safetensors").unlink(missing_ok=True)
            value_seconds = time.perf_counter() - start
            start = time.perf_counter()
            shaper = BCPolicy(None, settings, prepared.normalizer)
            for name, steps, make in ((BC_FILE, config.bc_steps, _bc_data),
                                      (INVERSE_FILE, config.inverse_steps, _inverse_data)):
                if steps:
                    net, info = _train_mlp(*make(data, settings, shaper), steps=steps, seed=config.seed + 2,
                                           desc=name.replace("_", " "), progress=progress)
                    save_mlp(net, run_dir, name, info)
                else:
                    (run_dir / f"{name}.safetensors").unlink(missing_ok=True)
            mlp_seconds = time.perf_counter() - start
            report = plan(run_dir, episodes=config.eval_episodes, seed=0, progress=progress)
        write_plan(report, run_dir / "plan", run_dir)
        return {**report, "value_seconds": round(value_seconds, 2), "mlp_seconds": round(mlp_seconds, 2)}





def default_out(config: TrajectoryConfig) -> Path:
    return DOMAIN.default_out(config)


def train(config: TrajectoryConfig = PointMazeUMazeConfig(), out: str | os.PathLike | None = None, *,
          progress: bool = False) -> Path:
    """Make (or read) the data, train the denoiser, then the value model (``value_steps``) and the
    behaviour-cloning baseline (``bc_steps``), and evaluate the planner in the env
    (:meth:`Domain.train`). The run folder gets config.json, model/ema.safetensors, value_model.*,
    bc_policy.*, metrics.jsonl, checkpoints/, eval.json and plan.png/.json (the evaluation's paths)."""
    return DOMAIN.train(config, out, progress=progress)


DOMAIN = Trajectories(sample=sample, evaluate=evaluate, write_samples=write_samples, plan=plan,
                      write_plan=write_plan, calibration=calibration_problem)
register(DOMAIN, DESCRIPTIONS)


__all__ = ["CONFIGS", "DOMAIN", "PendulumConfig", "PlanReport", "PointMazeLargeConfig", "PointMazeMediumConfig",
           "PointMazeUMazeConfig", "Prepared", "TrajectoryConfig", "build_model", "evaluate", "load_data", "load_run",
           "make_trajectory_schedule", "plan", "planner_settings", "read_config", "sample", "train", "write_plan",
           "write_samples"]
