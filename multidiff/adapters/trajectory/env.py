"""The one way this package makes a gymnasium env, reads what it returns, and knows a maze.

:func:`make_env` is the single entry point to gymnasium (it registers gymnasium-robotics' envs
when they are installed); :func:`make_maze_env` is the continuing PointMaze the data is recorded
in, whose goal only the caller moves. gymnasium is imported only when an env is made.

Geometry (gymnasium-robotics' ``Maze``): the map is a list of rows, ``1`` a wall and
anything else (``0``, ``"r"``, ``"g"``, ``"c"``) free. Cell ``(row, col)`` has its centre
at ``x = (col + 0.5) * s - cols * s / 2``, ``y = rows * s / 2 - (row + 0.5) * s`` with cell
size ``s = 1`` for PointMaze: x grows with the column, but y *falls* as the row grows.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

MAZES = {"umaze": "PointMaze_UMaze-v3", "medium": "PointMaze_Medium-v3", "large": "PointMaze_Large-v3"}
MAZE_KWARGS = {"continuing_task": True, "reset_target": False}  # the goal stays put; only the episode limit ends it
PENDULUM_ID = "Pendulum-v1"


class MissingGymnasium(ImportError):
    """gymnasium (and, for PointMaze, gymnasium-robotics and MuJoCo) are needed to make an env."""


def maze_env_id(maze: str) -> str:
    """The PointMaze env id of a maze name (a :data:`MAZES` key)."""
    if maze not in MAZES:
        raise ValueError(f"unknown maze {maze!r}; choose one of {', '.join(MAZES)}")
    return MAZES[maze]


def is_maze(env_id: str) -> bool:
    """Whether ``env_id`` is a PointMaze env (whose goal and walls the planner and experts use)."""
    return env_id.startswith("PointMaze_")


def make_env(env_id: str, *, env_kwargs: dict | None = None, max_episode_steps: int | None = None):
    """``gymnasium.make(env_id, **env_kwargs)`` (registering gymnasium-robotics' envs when installed);
    an unknown id is a ValueError."""
    try:
        import gymnasium as gym
    except ImportError as error:
        raise MissingGymnasium(f"making an environment needs gymnasium ({error}); pip install 'gymnasium>=1.0'") \
            from error
    try:
        import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)
    except ImportError:
        if "Maze" in env_id:
            raise MissingGymnasium(f"{env_id} needs gymnasium-robotics and MuJoCo; pip install "
                                   f"'gymnasium-robotics>=1.4' 'mujoco>=3'") from None
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



def make_maze_env(maze: str = "umaze", *, max_episode_steps: int | None = None):
    """The continuing PointMaze env of ``maze`` whose goal only the caller moves (``reset_target=False``),
    ending after ``max_episode_steps`` (None: the env's own limit, 300 umaze, 600 medium, 800 large)."""
    return make_env(maze_env_id(maze), env_kwargs=MAZE_KWARGS, max_episode_steps=max_episode_steps)


# ---------------------------------------------------------------- maze geometry


def _walls(maze_map) -> np.ndarray:
    """``(rows, cols)`` bool, True at walls: cells equal to 1 (or True); ``0``/``"r"``/``"g"``/``"c"`` are free."""
    rows = [[cell == 1 for cell in row] for row in maze_map]
    if not rows or not rows[0] or any(len(row) != len(rows[0]) for row in rows):
        raise ValueError("a maze map is a non-empty list of equally long rows (1 = wall, 0 = free)")
    return np.array(rows, dtype=bool)


@dataclass(frozen=True, eq=False)
class MazeGeometry:
    """A maze's walls and cell size, with the env's cell <-> xy conversion (see the module docstring)."""

    walls: np.ndarray  # (rows, cols) bool
    scaling: float = 1.0

    @classmethod
    def from_map(cls, maze_map, scaling: float = 1.0) -> "MazeGeometry":
        return cls(_walls(maze_map), float(scaling))

    @property
    def shape(self) -> tuple[int, int]:
        return self.walls.shape

    def free_cells(self) -> list[tuple[int, int]]:
        """Every free ``(row, col)``, row by row."""
        return [(int(r), int(c)) for r, c in zip(*np.nonzero(~self.walls))]

    def is_free(self, cell) -> bool:
        row, col = cell
        return 0 <= row < self.shape[0] and 0 <= col < self.shape[1] and not self.walls[row, col]

    def cell_to_xy(self, cell) -> np.ndarray:
        """The world ``(x, y)`` of a cell's centre."""
        rows, cols = self.shape
        return np.array([(cell[1] + 0.5) * self.scaling - cols * self.scaling / 2,
                         rows * self.scaling / 2 - (cell[0] + 0.5) * self.scaling])

    def xy_to_cell(self, xy) -> tuple[int, int]:
        """The ``(row, col)`` holding a world point (cell edges belong to the cell below/right)."""
        rows, cols = self.shape
        return (int(np.floor((rows * self.scaling / 2 - xy[1]) / self.scaling)),
                int(np.floor((xy[0] + cols * self.scaling / 2) / self.scaling)))


def maze_geometry(env) -> MazeGeometry:
    """The geometry of a PointMaze/AntMaze env (wrapped or not), read from ``env.unwrapped.maze``."""
    maze = env.unwrapped.maze
    return MazeGeometry.from_map(maze.maze_map, maze.maze_size_scaling)


def shortest_path(maze_map, start_cell, goal_cell) -> list[tuple[int, int]]:
    """The fewest-moves path of cells from ``start_cell`` to ``goal_cell``, both included, by
    breadth-first search over free cells with 4-neighbour moves (ties: up, down, left, right).
    ``maze_map`` is a map (1 = wall) or a :class:`MazeGeometry`."""
    walls = maze_map.walls if isinstance(maze_map, MazeGeometry) else _walls(maze_map)
    geometry = MazeGeometry(walls)
    start, goal = tuple(int(v) for v in start_cell), tuple(int(v) for v in goal_cell)
    for name, cell in (("start", start), ("goal", goal)):
        if not geometry.is_free(cell):
            where = "a wall" if 0 <= cell[0] < walls.shape[0] and 0 <= cell[1] < walls.shape[1] else "outside"
            raise ValueError(f"{name} cell {cell} is {where} of the {walls.shape[0]} x {walls.shape[1]} maze; "
                             f"pick a free cell (0 in the map)")
    parent = {start: start}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            path = [cell]
            while path[-1] != start:
                path.append(parent[path[-1]])
            return path[::-1]
        for step_row, step_col in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            near = (cell[0] + step_row, cell[1] + step_col)
            if near not in parent and geometry.is_free(near):
                parent[near] = cell
                queue.append(near)
    raise ValueError(f"no path from cell {start} to cell {goal}: walls separate them; pick cells in one "
                     f"connected region of the maze")



__all__ = ["MAZES", "MAZE_KWARGS", "MazeGeometry", "MissingGymnasium", "PENDULUM_ID", "is_maze", "make_env",
           "make_maze_env", "maze_env_id", "maze_geometry", "shortest_path", "split_observation"]
