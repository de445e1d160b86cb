"""Trajectory metrics: the one episode runner, the episode starts every policy shares, and the
scores of a policy in its env (success rate, return, D4RL's normalised score, steps to success).

A policy is anything with ``reset(obs)`` and ``act(obs)`` (the :class:`~multidiff.adapters.
trajectory.Planner`, the baselines and experts of :mod:`multidiff.adapters.trajectory.policies`);
envs come from the adapter's single factory, :func:`~multidiff.adapters.trajectory.make_env`.
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator

import numpy as np

from ..adapters.trajectory import NoisyControllerPolicy, WaypointController, make_maze_env, maze_geometry

# ---------------------------------------------------------------- episode starts


def _maze_starts(free: list, count: int, rng: np.random.Generator) -> Iterator[dict]:
    """``count`` starts drawn one at a time from ``rng``: two distinct random free cells (start,
    goal), then a reset seed."""
    for _ in range(count):
        start, goal = (free[i] for i in rng.choice(len(free), size=2, replace=False))
        yield {"seed": int(rng.integers(2**31)),
               "options": {"reset_cell": np.array(start), "goal_cell": np.array(goal)}}


def maze_episodes(env, count: int, seed: int) -> list[dict]:
    """``count`` episode starts for a PointMaze env: distinct random free start and goal cells and
    a reset seed, all from ``seed`` (reset with ``env.reset(seed=..., options=...)``)."""
    return list(_maze_starts(maze_geometry(env).free_cells(), count, np.random.default_rng(seed)))


def plain_episodes(count: int, seed: int) -> list[dict]:
    """``count`` reset seeds drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    return [{"seed": int(rng.integers(2**31)), "options": None} for _ in range(count)]


def episode_starts(env, count: int, seed: int) -> list[dict]:
    """Maze starts for a maze env, plain seeds otherwise."""
    return maze_episodes(env, count, seed) if hasattr(env.unwrapped, "maze") else plain_episodes(count, seed)


# ---------------------------------------------------------------- the episode runner


def run_episodes(env, policy, starts: Iterable[dict], *, max_steps: int | None = None, record: int = 0,
                 stop_on_success: bool = False) -> dict:
    """Run ``policy`` (``reset(obs)`` and ``act(obs)``) from each of ``starts`` (taken one at a time,
    so they may be drawn lazily): every episode lasts ``max_steps`` steps (default: the env's limit)
    or until the env terminates (or, with ``stop_on_success``, until ``info["success"]``). Returns
    the summed rewards, whether and when ``info["success"]`` first turned true (``has_success``:
    whether the env reports it at all), and the states of the first ``record`` episodes (with the
    policy's ``plans`` when it has them)."""
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
            if terminated or (stop_on_success and first_success is not None):
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


# ---------------------------------------------------------------- scores


def normalised_score(value: float, random_value: float, reference_value: float) -> float | None:
    """D4RL's normalised score ``100 (R - R_random) / (R_reference - R_random)`` (None when the two
    baselines tie)."""
    if not math.isfinite(reference_value - random_value) or reference_value == random_value:
        return None
    return 100.0 * (value - random_value) / (reference_value - random_value)


def episode_scores(result: dict) -> dict:
    """The success rate (None when the env reports no success), mean return and mean steps to
    success (None without a success) of one :func:`run_episodes` result."""
    steps = result["steps_to_success"]
    return {"success_rate": float(np.mean(result["successes"])) if result["has_success"] else None,
            "mean_return": float(np.mean(result["returns"])),
            "mean_steps_to_success": float(np.mean(steps)) if steps else None}


def policy_scores(results: dict[str, dict]) -> dict[str, dict]:
    """:func:`episode_scores` of each policy's :func:`run_episodes` result on the same starts, with
    its :func:`normalised_score` between the ``"random"`` policy's and the ``"reference"`` one's
    mean returns (None without a reference) and, when there is a ``"d4rl_reference"``, its
    ``normalised_score_d4rl`` relative to that one."""
    scores = {name: episode_scores(result) for name, result in results.items()}
    random_return = scores["random"]["mean_return"]
    reference_return = scores["reference"]["mean_return"] if "reference" in scores else None
    d4rl_return = scores["d4rl_reference"]["mean_return"] if "d4rl_reference" in scores else None
    for values in scores.values():
        values["normalised_score"] = (None if reference_return is None else
                                      normalised_score(values["mean_return"], random_return, reference_return))
        if d4rl_return is not None:  # relative to D4RL's own (slower) Maze2D controller, as published scores are
            values["normalised_score_d4rl"] = normalised_score(values["mean_return"], random_return, d4rl_return)
    return scores


def evaluate_controller(maze: str = "umaze", *, episodes_count: int = 50, max_steps: int | None = None,
                        seed: int = 0, noise: float = 0.0) -> dict:
    """The reference baseline for planners: the waypoint controller (action noise ``noise``) in
    ``episodes_count`` episodes from random distinct start and goal cells. An episode succeeds at
    the first step with ``info["success"]`` (within 0.45 of the goal) inside ``max_steps`` (default:
    the env's limit, 300 umaze, 600 medium, 800 large). Returns the success rate and the mean
    steps to success of the successful episodes. One generator from ``seed`` draws each episode's
    start and then its action noise, episode after episode."""
    env = make_maze_env(maze)
    limit = max_steps or env.spec.max_episode_steps
    geometry = maze_geometry(env)
    rng = np.random.default_rng(seed)
    policy = NoisyControllerPolicy(WaypointController(geometry), noise, rng)
    try:
        result = run_episodes(env, policy, _maze_starts(geometry.free_cells(), episodes_count, rng), max_steps=limit,
                              stop_on_success=True)
    finally:
        env.close()
    steps_taken = result["steps_to_success"]
    return {"maze": maze, "episodes": episodes_count, "max_steps": limit, "noise": noise,
            "success_rate": len(steps_taken) / episodes_count,
            "mean_steps": float(np.mean(steps_taken)) if steps_taken else float("nan")}


__all__ = ["episode_scores", "episode_starts", "evaluate_controller", "maze_episodes", "normalised_score",
           "plain_episodes", "policy_scores", "run_episodes"]
