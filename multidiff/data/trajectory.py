"""Offline trajectory data for Diffuser-style planning (Janner et al. 2022) on PointMaze.

D4RL's Maze2D data cannot be downloaded here, so :func:`generate_maze_dataset` records a
dataset of the same kind on gymnasium-robotics' ``PointMaze_*-v3`` (MuJoCo), the way D4RL
collected Maze2D: one scripted controller drives the point towards a goal, and each time
it gets there a new goal cell is drawn at random, so the data is long continuing motion
between random goals, not short task episodes. For a reward-maximising task it also makes
mixed-quality Pendulum-v1 data (:func:`generate_pendulum_dataset`, with the adapter's
``SwingUpController``). The envs, the maze geometry and the experts are the trajectory adapter's
(:mod:`multidiff.adapters.trajectory`: ``env`` and ``policies``); this module records and reads data.

Data collection (the defaults are the module constants named in brackets):

1. The env is ``make_maze_env(maze)``, ``MAZES[maze]`` with ``continuing_task=True, reset_target=False``:
   it never terminates and never moves the goal itself; the generator owns the goal.
2. The run is cut into episodes of ``episode_steps`` steps [``EPISODE_STEPS``]. Each
   episode starts with ``env.reset(seed=..., options={"reset_cell", "goal_cell"})`` at
   two distinct random free cells; the env adds its own uniform position noise of
   +-0.25 cell to both. The last step of an episode has ``timeouts = True``; nothing
   ever has ``terminals = True`` (the task is continuing).
3. The adapter's ``WaypointController`` plans the breadth-first shortest path of cells from the
   point's cell to the goal's cell (again whenever the goal moves or the point strays off
   the path) and steers with a PD law towards the next waypoint (a cell centre; the last
   waypoint is the goal itself):
   ``action = clip(kp * (waypoint - xy) - kd * v, -1, 1)`` [``KP``, ``KD``], moving on
   to the next waypoint within ``WAYPOINT_THRESHOLD`` of the current one.
4. Gaussian noise of std ``noise`` [``NOISE``] is added to the action, which is clipped
   to the action box again and recorded as executed.
5. When the point is within ``goal_threshold`` [``GOAL_THRESHOLD``] of the goal and
   slower than ``goal_speed`` [``GOAL_SPEED``], a new goal is drawn: a random free cell
   other than the point's, plus the env's uniform +-0.25 cell noise, written into the env
   (``env.unwrapped.goal``) for the next step. Requiring the point to (nearly) stop, as
   D4RL's controller did, puts arrivals at rest on the goal into the data: the state a
   Diffuser plan is conditioned to end in.

Measured with the defaults (one CPU thread, gymnasium-robotics 1.4.2, MuJoCo 4.0): 12-17k
steps/s (200k umaze steps in ~12 s); goals reached per 100k steps: umaze ~1,000, medium
~660, large ~450; mean speed 3.0-3.8 (each velocity component is capped near 5).

One ``numpy.random.Generator`` seeded by ``seed`` draws the reset seeds, start and goal
cells, the goal noise and the action noise, so a seed gives the same arrays every time
(on one machine and MuJoCo version).

Recorded arrays (``N`` steps; row ``t`` is what held when action ``t`` was chosen):

================  ==================  ==================================================
``observations``  ``(N, 4)`` float32  ``x, y, vx, vy`` of the point (the env's
                                      ``observation``; ``x, y`` is ``achieved_goal``)
``actions``       ``(N, 2)`` float32  the executed force command, in ``[-1, 1]``
``rewards``       ``(N,)`` float32    the env's sparse reward for the step: 1 when the
                                      point ends it within 0.45 of the goal in force
``terminals``     ``(N,)`` bool       all False (continuing task)
``timeouts``      ``(N,)`` bool       True on the last step of each episode
``goals``         ``(N, 2)`` float32  the desired goal in force (``desired_goal``)
================  ==================  ==================================================

plus ``params``, a JSON-able dict of every setting above and the library versions.

The same field names (those of D4RL and Minari) are what :func:`load_offline_dataset`
reads from your own ``.npz``; :func:`episodes` and :func:`segments` cut any such dataset
into the fixed-length windows a temporal denoiser trains on, never across an episode end.
"""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..adapters.trajectory.env import (MAZES, PENDULUM_ID, MazeGeometry, make_env, make_maze_env, maze_env_id,
                                       maze_geometry)
from ..adapters.trajectory.policies import (KD, KP, MAX_TORQUE, WAYPOINT_THRESHOLD, SwingUpController,
                                            WaypointController)
from ..atomic import atomic_write_npz
from .cache import cache_dir

# steps recorded by default: enough for a CPU Diffuser recipe, made in well under a minute for umaze
DEFAULT_STEPS = {"umaze": 200_000, "medium": 400_000, "large": 400_000}
# a goal counts as reached this close (D4RL's solve threshold) and this slow (m/s). Without the
# speed test the point crossed the goal at ~2.8 m/s; with it, at ~0.4 m/s, for 14 % fewer goals
# per step in umaze and 1 % fewer in medium
GOAL_THRESHOLD = 0.1
GOAL_SPEED = 0.5
NOISE = 0.5  # std of the Gaussian action noise (D4RL's noisy Maze2D collection used 0.5)
EPISODE_STEPS = 10_000  # steps between resets (each episode ends with timeouts = True)
SUCCESS_RADIUS = 0.45  # gymnasium-robotics' info["success"] and sparse reward radius
FORMAT = 1  # bump when the generator changes what a seed produces
FIELDS = ("observations", "actions", "rewards", "terminals", "timeouts")


# ---------------------------------------------------------------- generation


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("gymnasium", "gymnasium-robotics", "mujoco"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def generation_params(maze: str = "umaze", *, steps: int | None = None, seed: int = 0, noise: float = NOISE,
                      episode_steps: int = EPISODE_STEPS, kp: float = KP, kd: float = KD,
                      waypoint_threshold: float = WAYPOINT_THRESHOLD,
                      goal_threshold: float = GOAL_THRESHOLD, goal_speed: float = GOAL_SPEED) -> dict:
    """The settings that fix what :func:`generate_maze_dataset` records (checked, defaults filled in)."""
    env_id = maze_env_id(maze)
    steps = DEFAULT_STEPS[maze] if steps is None else int(steps)
    if steps < 1 or episode_steps < 1:
        raise ValueError(f"need steps >= 1 and episode_steps >= 1, got {steps}, {episode_steps}")
    if noise < 0 or goal_threshold <= 0 or waypoint_threshold <= 0 or goal_speed <= 0:
        raise ValueError(f"need noise >= 0 and positive thresholds, got noise={noise}, goal_threshold="
                         f"{goal_threshold}, goal_speed={goal_speed}, waypoint_threshold={waypoint_threshold}")
    return {"format": FORMAT, "maze": maze, "env_id": env_id, "steps": steps, "seed": int(seed),
            "noise": float(noise), "episode_steps": int(episode_steps), "kp": float(kp), "kd": float(kd),
            "waypoint_threshold": float(waypoint_threshold), "goal_threshold": float(goal_threshold),
            "goal_speed": float(goal_speed),
            "reward_type": "sparse", "continuing_task": True, "reset_target": False}


def _new_goal(env, geometry: MazeGeometry, free: list, avoid: tuple, rng: np.random.Generator) -> np.ndarray:
    """A random free cell's centre other than ``avoid``, plus the env's own uniform goal noise."""
    choices = [cell for cell in free if cell != avoid]
    cell = choices[rng.integers(len(choices))]
    spread = env.unwrapped.position_noise_range * geometry.scaling
    return geometry.cell_to_xy(cell) + rng.uniform(-spread, spread, size=2)


def generate_maze_dataset(maze: str = "umaze", *, steps: int | None = None, seed: int = 0, noise: float = NOISE,
                          episode_steps: int = EPISODE_STEPS, kp: float = KP, kd: float = KD,
                          waypoint_threshold: float = WAYPOINT_THRESHOLD, goal_threshold: float = GOAL_THRESHOLD,
                          goal_speed: float = GOAL_SPEED, progress: bool = False) -> dict:
    """Record ``steps`` steps (default ``DEFAULT_STEPS[maze]``) of the noisy waypoint controller in
    the continuing PointMaze ``maze``, as the module docstring describes. Returns the arrays and
    ``params`` (with ``seconds``, the time taken, under ``params["timing"]``)."""
    params = generation_params(maze, steps=steps, seed=seed, noise=noise, episode_steps=episode_steps, kp=kp,
                               kd=kd, waypoint_threshold=waypoint_threshold, goal_threshold=goal_threshold,
                               goal_speed=goal_speed)
    steps = params["steps"]
    env = make_maze_env(maze, max_episode_steps=episode_steps)
    geometry = maze_geometry(env)
    free = geometry.free_cells()
    controller = WaypointController(geometry, kp=kp, kd=kd, waypoint_threshold=waypoint_threshold)
    rng = np.random.default_rng(seed)
    observations = np.empty((steps, 4), np.float32)
    actions = np.empty((steps, 2), np.float32)
    rewards = np.empty(steps, np.float32)
    goals = np.empty((steps, 2), np.float32)
    timeouts = np.zeros(steps, bool)
    started = time.perf_counter()
    t = 0
    try:
        while t < steps:
            start, goal = (free[i] for i in rng.choice(len(free), size=2, replace=False))
            observation, _ = env.reset(seed=int(rng.integers(2**31)),
                                       options={"reset_cell": np.array(start), "goal_cell": np.array(goal)})
            controller.reset()
            end = min(t + episode_steps, steps)
            for t in range(t, end):
                action = controller(observation) + noise * rng.standard_normal(2)
                action = np.clip(action, -1.0, 1.0)
                observations[t], actions[t], goals[t] = observation["observation"], action, observation["desired_goal"]
                observation, reward, _, _, _ = env.step(action)
                rewards[t] = reward
                xy, velocity = observation["observation"][:2], observation["observation"][2:4]
                arrived = np.linalg.norm(xy - env.unwrapped.goal) <= goal_threshold
                if arrived and np.linalg.norm(velocity) <= goal_speed:
                    env.unwrapped.goal = _new_goal(env, geometry, free, geometry.xy_to_cell(xy), rng)
                    env.unwrapped.update_target_site_pos()
                    observation["desired_goal"] = env.unwrapped.goal.copy()
                if progress and (t + 1) % 50_000 == 0:
                    print(f"{maze}: {t + 1:,}/{steps:,} steps", flush=True)
            timeouts[end - 1] = True
            t = end
    finally:
        env.close()
    seconds = time.perf_counter() - started
    params = {**params, "versions": _versions(), "timing": {"seconds": round(seconds, 3),
                                                            "steps_per_second": round(steps / seconds, 1)}}
    return {"observations": observations, "actions": actions, "rewards": rewards,
            "terminals": np.zeros(steps, bool), "timeouts": timeouts, "goals": goals, "params": params}


def goals_reached(dataset: dict) -> int:
    """How many times the goal was reached: goal changes inside episodes (a reset also moves it)."""
    goals = np.asarray(dataset["goals"])
    ends = np.asarray(dataset["terminals"], bool).copy()
    if "timeouts" in dataset:
        ends |= np.asarray(dataset["timeouts"], bool)
    changed = np.any(goals[1:] != goals[:-1], axis=1)
    return int(np.sum(changed & ~ends[:-1]))


# ---------------------------------------------------------------- npz files and the cache

# the settings a cached file must share with the request; versions and timing are only recorded
_IDENTITY = ("format", "maze", "env_id", "steps", "seed", "noise", "episode_steps", "kp", "kd",
             "waypoint_threshold", "goal_threshold", "goal_speed", "reward_type", "continuing_task", "reset_target")


def save_dataset(path: str | Path, dataset: dict) -> Path:
    """Write a dataset's arrays and its ``params`` (as a JSON string array) to ``path`` atomically."""
    arrays = {name: np.asarray(value) for name, value in dataset.items() if name != "params"}
    arrays["params"] = np.array(json.dumps(dataset.get("params", {}), sort_keys=True))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_npz(path, arrays)


def _read_npz(path: Path) -> dict:
    """Every array of an npz, ``params`` decoded when it is a JSON object (and dropped when not);
    raises ValueError/OSError/BadZipFile on a damaged file or one that needs unpickling."""
    with np.load(path, allow_pickle=False) as arrays:
        dataset = {name: arrays[name] for name in arrays.files}
    if "params" in dataset:
        try:
            params = json.loads(str(dataset["params"])) if dataset["params"].ndim == 0 else None
        except ValueError:
            params = None
        if isinstance(params, dict):
            dataset["params"] = params
        else:
            del dataset["params"]
    return dataset


def maze_cache_path(maze: str = "umaze", *, steps: int | None = None, seed: int = 0) -> Path:
    maze_env_id(maze)
    steps = DEFAULT_STEPS[maze] if steps is None else int(steps)
    return cache_dir("trajectory") / f"{maze}-{steps}-seed{seed}.npz"


def load_maze_dataset(maze: str = "umaze", *, steps: int | None = None, seed: int = 0,
                      progress: bool = False) -> dict:
    """:func:`generate_maze_dataset` with the default settings, cached in
    ``$MULTIDIFF_CACHE/trajectory/<maze>-<steps>-seed<seed>.npz``. A damaged cache file, or one
    made with other settings (an older generator), is made again and replaced."""
    params = generation_params(maze, steps=steps, seed=seed)
    path = maze_cache_path(maze, steps=params["steps"], seed=seed)
    if path.is_file():
        try:
            dataset = _read_npz(path)
            if ({k: dataset["params"].get(k) for k in _IDENTITY} == {k: params[k] for k in _IDENTITY}
                    and all(name in dataset for name in (*FIELDS, "goals"))
                    and len(dataset["observations"]) == params["steps"]):
                return dataset
        except (OSError, ValueError, KeyError, EOFError, AttributeError, zipfile.BadZipFile):
            pass  # damaged: rebuilt below, never trusted
    dataset = generate_maze_dataset(maze, steps=params["steps"], seed=seed, progress=progress)
    save_dataset(path, dataset)
    return dataset


# ---------------------------------------------------------------- your own offline data


def _boolean(name: str, values: np.ndarray, where: str) -> np.ndarray:
    if values.dtype == bool:
        return values
    if not np.issubdtype(values.dtype, np.number) or not np.all((values == 0) | (values == 1)):
        raise ValueError(f"{where}: field {name!r} must be boolean (or 0/1), got dtype {values.dtype}")
    return values.astype(bool)


def load_offline_dataset(path: str | Path) -> dict:
    """Your own offline RL data: an ``.npz`` with the D4RL/Minari fields ``observations (N, S)``,
    ``actions (N, A)``, ``rewards (N,)``, ``terminals (N,)`` and optionally ``timeouts (N,)``
    (bool or 0/1; the last step of each episode is marked in one of them). Other arrays with
    ``N`` rows (``goals``...) are kept, and so is ``params`` when it is a JSON object (as
    :func:`save_dataset` writes it). Returns float32 observations/actions/rewards and bool
    terminals/timeouts; every problem is a ValueError naming the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no offline dataset at {str(path)!r} (give an .npz with the fields "
                                f"{', '.join(FIELDS)})")
    where = str(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{where} is not an .npz archive; write your arrays with numpy.savez")
    try:
        raw = _read_npz(path)
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"{where} is a damaged .npz ({error}); write it again with numpy.savez") from error
    except ValueError as error:
        raise ValueError(f"{where}: cannot read it without unpickling ({error}); save plain numeric arrays "
                         f"with numpy.savez") from error
    for name in FIELDS[:4]:
        if name not in raw:
            raise ValueError(f"{where}: missing field {name!r}; an offline dataset needs "
                             f"{', '.join(FIELDS[:4])} (and optionally timeouts), found {', '.join(raw) or 'none'}")
    count = len(raw["observations"]) if raw["observations"].ndim else 0
    if count == 0:
        raise ValueError(f"{where}: field 'observations' is empty; it needs shape (N, obs_dim) with N >= 1")
    dataset = {}
    for name in FIELDS:
        if name not in raw:
            continue
        values = raw[name]
        ndim = 2 if name in ("observations", "actions") else 1
        if values.ndim != ndim:
            shape = "(N, dim)" if ndim == 2 else "(N,)"
            raise ValueError(f"{where}: field {name!r} has shape {values.shape}; it must be {shape}")
        if len(values) != count:
            raise ValueError(f"{where}: field {name!r} has {len(values)} rows but 'observations' has {count}; "
                             f"every field needs one row per step")
        if name in ("terminals", "timeouts"):
            dataset[name] = _boolean(name, values, where)
            continue
        if not np.issubdtype(values.dtype, np.number):
            raise ValueError(f"{where}: field {name!r} must be numeric, got dtype {values.dtype}")
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise ValueError(f"{where}: field {name!r} has {int(bad.sum())} NaN or infinite values (first at row "
                             f"{row}); drop or repair those steps")
        dataset[name] = values.astype(np.float32)
    dataset.setdefault("timeouts", np.zeros(count, bool))
    if not (dataset["terminals"].any() or dataset["timeouts"].any()):
        raise ValueError(f"{where}: no episode boundary: 'terminals' and 'timeouts' are all False; mark the last "
                         f"step of each episode (terminals=True where the episode ended in the task, timeouts=True "
                         f"where it was cut off; for one single episode set timeouts[-1] = True)")
    for name, values in raw.items():
        if name == "params":
            dataset[name] = values
        elif name not in dataset and values.ndim >= 1 and len(values) == count:
            dataset[name] = values
    return dataset


# ---------------------------------------------------------------- episodes and windows


def episodes(dataset: dict) -> list[slice]:
    """The steps of each episode: each ends at a step marked in ``terminals`` or ``timeouts``;
    steps after the last mark are one more (unfinished) episode."""
    ends = np.asarray(dataset["terminals"], bool).copy()
    if "timeouts" in dataset:
        ends |= np.asarray(dataset["timeouts"], bool)
    stops = (np.flatnonzero(ends) + 1).tolist()
    if not stops or stops[-1] != len(ends):
        stops.append(len(ends))
    return [slice(start, stop) for start, stop in zip([0, *stops[:-1]], stops) if stop > start]


def window_starts(dataset: dict, horizon: int, stride: int = 1) -> np.ndarray:
    """The first steps of every ``horizon``-step window inside one episode, every ``stride`` steps
    from each episode's start (episodes shorter than ``horizon`` give none; nothing is padded)."""
    if horizon < 1 or stride < 1:
        raise ValueError(f"need horizon >= 1 and stride >= 1, got {horizon}, {stride}")
    starts = [np.arange(part.start, part.stop - horizon + 1, stride) for part in episodes(dataset)]
    return np.concatenate(starts) if starts else np.zeros(0, np.int64)


def step_change_limits(dataset: dict) -> np.ndarray:
    """``(S,)`` the largest change of each observation feature from one step to the next inside an
    episode: how fast the data ever moves (a planner's feasibility test of its plans)."""
    observations = np.asarray(dataset["observations"], np.float64)
    changes = [np.abs(np.diff(observations[part], axis=0)) for part in episodes(dataset) if part.stop - part.start > 1]
    if not changes:
        raise ValueError("no episode has two steps: the data give no step changes")
    return np.concatenate(changes).max(axis=0)


def segments(dataset: dict, horizon: int, stride: int = 1) -> torch.Tensor:
    """Windows ``(M, horizon, obs_dim + act_dim)`` float32 of ``[observation, action]`` rows that never
    cross an episode end (as Diffuser's SequenceDataset without padding). They are copies: ``M * horizon``
    rows, so raise ``stride`` on large sets, or index with :func:`window_starts` instead."""
    starts = window_starts(dataset, horizon, stride)
    if len(starts) == 0:
        longest = max((part.stop - part.start for part in episodes(dataset)), default=0)
        raise ValueError(f"no episode has {horizon} steps (the longest has {longest}); use a shorter horizon")
    rows = np.concatenate([np.asarray(dataset["observations"], np.float32),
                           np.asarray(dataset["actions"], np.float32)], axis=1)  # (N, S + A)
    index = starts[:, None] + np.arange(horizon)  # (M, H)
    return torch.from_numpy(rows[index])  # (M, H, S + A)


def summary(dataset: dict) -> dict:
    """Episodes, goals reached, mean speed and reward rate of a dataset (for reports)."""
    observations = np.asarray(dataset["observations"])
    result = {"steps": len(observations), "episodes": len(episodes(dataset)),
              "mean_speed": float(np.linalg.norm(observations[:, 2:4], axis=1).mean()),
              "reward_rate": float(np.asarray(dataset["rewards"]).mean())}
    if "goals" in dataset:
        result["goals_reached"] = goals_reached(dataset)
    return result


# ---------------------------------------------------------------- Pendulum: a reward-maximising task

PENDULUM_STEPS = 100_000  # 500 episodes of the env's 200 steps


def generate_pendulum_dataset(*, steps: int = PENDULUM_STEPS, seed: int = 0, noise: float = 0.5) -> dict:
    """Mixed-quality Pendulum-v1 data: each 200-step episode draws a share ``p ~ U(0, 1)``; at each
    step, with probability ``p`` the action is uniformly random in ``[-2, 2]``, else the
    :class:`SwingUpController`'s plus Gaussian noise of std ``noise`` (clipped). One seed fixes
    everything. The fields are :func:`load_offline_dataset`'s; the last step of each episode has
    ``timeouts = True``."""
    if steps < 1 or noise < 0:
        raise ValueError(f"need steps >= 1 and noise >= 0, got {steps}, {noise}")
    env = make_env(PENDULUM_ID)
    limit = env.spec.max_episode_steps
    controller = SwingUpController()
    rng = np.random.default_rng(seed)
    observations = np.empty((steps, 3), np.float32)
    actions = np.empty((steps, 1), np.float32)
    rewards = np.empty(steps, np.float32)
    timeouts = np.zeros(steps, bool)
    t = 0
    try:
        while t < steps:
            observation, _ = env.reset(seed=int(rng.integers(2**31)))
            share = rng.uniform()
            for k in range(limit):
                if rng.uniform() < share:
                    action = rng.uniform(-MAX_TORQUE, MAX_TORQUE, size=1)
                else:
                    action = np.clip(controller(observation) + noise * rng.standard_normal(1), -MAX_TORQUE, MAX_TORQUE)
                observations[t], actions[t] = observation, action
                observation, reward, _, _, _ = env.step(action.astype(np.float32))
                rewards[t] = reward
                t += 1
                if t == steps or k == limit - 1:
                    timeouts[t - 1] = True
                    break
    finally:
        env.close()
    params = {"env_id": PENDULUM_ID, "steps": steps, "seed": int(seed), "noise": float(noise),
              "mix": "per episode p ~ U(0, 1) random steps, else swing-up + noise", "versions": _versions()}
    return {"observations": observations, "actions": actions, "rewards": rewards, "terminals": np.zeros(steps, bool),
            "timeouts": timeouts, "params": params}


__all__ = ["DEFAULT_STEPS", "EPISODE_STEPS", "FIELDS", "FORMAT", "GOAL_SPEED", "GOAL_THRESHOLD", "MAZES", "NOISE",
           "PENDULUM_ID", "PENDULUM_STEPS", "SUCCESS_RADIUS", "episodes", "generate_maze_dataset",
           "generate_pendulum_dataset", "generation_params", "goals_reached", "load_maze_dataset",
           "load_offline_dataset", "maze_cache_path", "save_dataset", "segments", "summary", "window_starts"]
