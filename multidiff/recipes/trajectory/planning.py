"""A trajectory run in its env: the planner beside the baselines (``plan``), the planned paths
as pictures, and sampling and evaluation."""

from __future__ import annotations

import os
import time
import typing
from pathlib import Path

import numpy as np
import torch

from ...adapters.trajectory import (BC_FILE, PENDULUM_ID, BCPolicy, ControllerPolicy, D4RLWaypointController, Planner,
                                   PlannerSettings, RandomPolicy, SwingUpController, WaypointController, is_maze,
                                   load_mlp, make_env, maze_geometry, plan_png, plan_title, split_observation)
from ...atomic import atomic_write_bytes, atomic_write_json, atomic_write_npz
from ...core.samplers import SAMPLERS
from ...metrics.trajectory import episode_starts, policy_scores, run_episodes
from ...train.progress import progress_bar, sampling_progress
from ..common import sampling_device, threads_of
from ..registry import parse_setting
from .model import PLOTTED_EPISODES, TrajectoryConfig, read_config


# ---------------------------------------------------------------- plan: the planner in the env


class PlanReport(dict):
    """The figures of :func:`plan` (JSON-able as a dict); ``paths`` holds what :func:`write_plan`
    draws (states and plans of the first episodes, the maze walls)."""

    paths: dict


def _reference(env, settings: PlannerSettings):
    """The controller that made the data, when the env is one this package makes data for."""
    if is_maze(settings.env_id):
        return ControllerPolicy(WaypointController(maze_geometry(env)))
    if settings.env_id == PENDULUM_ID:
        return ControllerPolicy(SwingUpController())
    return None


def plan(run_dir: str | os.PathLike, *, episodes: int = 50, seed: int = 0, sampler: str | None = None,
         steps: int | None = None, progress: bool = False, options: dict | None = None) -> PlanReport:
    """Run the run's planner for ``episodes`` episodes in its env and the baselines on the same
    episode starts (drawn from ``seed``); see the module docstring for the figures. ``options``
    override the run's :class:`PlannerSettings` (``{"wall_margin": "0.1"}``: strings, as ``--set
    key=value`` gives them, are parsed by the field's type)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if sampler is not None and sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    config = read_config(run_dir)
    with threads_of(config):
        planner = Planner.from_run(run_dir, device=sampling_device(config), sampler=sampler, steps=steps, seed=seed,
                                   **planner_options(options or {}))
        settings = planner.settings
        env = planner.make_env()
        try:
            starts = episode_starts(env, episodes, seed)
            limit = settings.max_episode_steps or env.spec.max_episode_steps
            record = min(episodes, PLOTTED_EPISODES)
            policies = {"planner": planner, "reference": _reference(env, settings),
                        "random": RandomPolicy(settings.action_low, settings.action_high, seed=seed)}
            if is_maze(settings.env_id):
                policies["d4rl_reference"] = ControllerPolicy(D4RLWaypointController(maze_geometry(env), seed=seed))
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
    figures = policy_scores(results)
    calls = planner.denoiser_calls
    report = PlanReport({
        "recipe": config.recipe, "env_id": settings.env_id, "episodes": episodes, "max_steps": int(limit),
        "seed": seed, "sampler": settings.sampler, "sample_steps": settings.sample_steps,
        "tracking": settings.tracking, "replan_every": settings.replan_every, "num_plans": settings.num_plans,
        "guidance_scale": settings.guidance_scale if planner.value is not None else None,
        **figures["planner"],
        "plan_seconds": float(np.median(planner.plan_seconds)), "denoiser_calls_per_plan": float(np.mean(calls)),
        "max_denoiser_calls_per_plan": int(np.max(calls)), "arrival_min": settings.arrival_min,
        "warm_start": settings.warm_start, "wall_margin": settings.wall_margin, "retries": settings.retries,
        "retime": settings.retime,
        "plans_per_episode": len(calls) / episodes, "threads": torch.get_num_threads(),
    })
    for name in ("reference", "d4rl_reference", "random", "bc"):
        if name in figures:
            report[name] = figures[name]
    report.paths = {"planner": results["planner"]["paths"], "reference": results.get("reference", {}).get("paths"),
                    "env_id": settings.env_id, "walls": _walls(settings)}
    return report


def planner_options(options: dict) -> dict:
    """``options`` for :meth:`Planner.from_run`, string values parsed by the :class:`PlannerSettings`
    field's type (a number, true/false, or a comma-separated list for a tuple)."""
    kinds = typing.get_type_hints(PlannerSettings)
    parsed = {}
    for name, value in options.items():
        if name not in kinds:
            raise ValueError(f"the planner has no setting {name!r}; its settings are: {', '.join(kinds)}")
        kind = kinds[name]
        if not isinstance(value, str) or kind is str:
            parsed[name] = value
        elif typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            parsed[name] = tuple(parse_setting(name, item, part.strip()) for part in value.split(",") if part.strip())
        else:
            parsed[name] = parse_setting(name, kind, value)
    return parsed


def _walls(settings: PlannerSettings) -> list | None:
    if not is_maze(settings.env_id):
        return None
    env = make_env(settings.env_id, env_kwargs=settings.env_kwargs)
    try:
        return maze_geometry(env).walls.tolist()
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
        atomic_write_bytes(png, plan_png(drawn, plan_title(report)))
        paths.append(png)
    return [*paths, json_path]


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
    from ...train.calibration import CalibrationProblem

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
    atomic_write_bytes(png, plan_png({"planner": episodes, "walls": drawn.get("walls")},
                                      f"{drawn.get('env_id')}: sampled plans from start (green) to goal (red)"
                                      if drawn.get("walls") is not None else f"{drawn.get('env_id')}: sampled plans"))
    arrays = {key: np.asarray(drawn[key], np.float32) for key in ("observations", "actions", "starts")}
    if drawn.get("goals") is not None:
        arrays["goals"] = np.asarray(drawn["goals"], np.float32)
    npz = atomic_write_npz(stem.with_name(stem.name + ".npz"), arrays)
    return [png, npz]


def evaluate(run_dir: str | os.PathLike, *, num: int | None = None, sampler: str | None = None,
             steps: int | None = None, seed: int = 0, progress: bool = False, guidance: float | None = None) -> dict:
    """:func:`plan` with ``num`` episodes (default: the run's ``eval_episodes``), as a JSON-able dict."""
    config = read_config(run_dir)
    _check_not_conditional(config, None, guidance)
    return dict(plan(run_dir, episodes=config.eval_episodes if num is None else num, seed=seed, sampler=sampler,
                     steps=steps, progress=progress))
