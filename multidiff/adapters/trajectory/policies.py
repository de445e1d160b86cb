"""Policies that act in an env beside the planner: the experts that record the data (D4RL's
Maze2D waypoint controller, a Pendulum swing-up) and the baselines the planner is measured
against (behaviour cloning, uniformly random actions, a scripted controller as a policy).

A policy has ``reset(obs)`` (at every episode start) and ``act(obs) -> action``, ``obs`` as
the env returns it; an expert controller is ``controller(obs) -> action`` with ``reset()``.
"""

from __future__ import annotations

import numpy as np
import torch

from .env import MazeGeometry, shortest_path, split_observation
from .networks import BCNet
from .normalizer import Normalizer
from .planner import PlannerSettings

# PD gains, D4RL's (p_gain 10, d_gain -1). Here the point is a 4.19 kg ball pushed by 100 N per
# action unit (a_max ~ 24 m/s^2), each velocity component capped at 5 m/s by the env: kp = 10
# saturates the action beyond ~0.1 of the waypoint, and in that linear zone kd = 1 gives a natural
# frequency sqrt(24 * 10) ~ 15.5 rad/s and a damping ratio 24 * 1 / (2 * 15.5) ~ 0.77. Slower
# settings (kp 5 or kd 2) reached 7-17 % fewer goals per step in all three mazes.
KP = 10.0
KD = 1.0
# move on to the next cell centre within this distance of it (cells are 1 wide). D4RL waited
# within 0.1 and nearly at rest, stopping at every cell; 0.4 lets the point flow through turns
# (0.2 reached ~6-11 % fewer goals per step)
WAYPOINT_THRESHOLD = 0.4
# gymnasium's Pendulum-v1: theta'' = 3 g / (2 l) sin(theta) + 3 / (m l^2) u with g = 10, m = l = 1, theta = 0
# upright, |u| <= 2. E = theta'^2 / 2 + 15 cos(theta) is conserved without torque and is 15 at rest upright;
# dE/dt = 3 u theta', so u = k (15 - E) theta' pumps E towards 15 (energy shaping, Astrom & Furuta 2000), and a
# PD law holds the top once cos(theta) > SWITCH. Measured: mean return -136 over 30 random starts (a uniformly
# random policy: -1,176); gains 0.2-1 and switch 0.8-0.9 all gave -136 to -152.
SWING_GAIN, SWITCH, HOLD_KP, HOLD_KD = 1.0, 0.9, 10.0, 2.0
MAX_TORQUE = 2.0


# ---------------------------------------------------------------- experts


class WaypointController:
    """D4RL's Maze2D data-collection policy: a PD law on the point's position and velocity
    towards the next waypoint of the shortest cell path to the goal.

    Call it on the env's dict observation (``observation = (x, y, vx, vy)``, ``desired_goal``)
    to get an action in ``[-1, 1]^2``. It replans when the goal moves or when the point
    leaves the cells it was crossing (pushed by noise or a wall)."""

    def __init__(self, geometry: MazeGeometry, *, kp: float = KP, kd: float = KD,
                 waypoint_threshold: float = WAYPOINT_THRESHOLD):
        self.geometry = geometry
        self.kp, self.kd, self.waypoint_threshold = float(kp), float(kd), float(waypoint_threshold)
        self.reset()

    def reset(self) -> None:
        """Forget the plan (call at every env reset)."""
        self.goal: np.ndarray | None = None
        self.path: list[tuple[int, int]] = []
        self.waypoints: list[np.ndarray] = []
        self.index = 0  # waypoints[index] is the target, in cell path[index + 1] (path[0] if the path is one cell)

    def _plan(self, cell: tuple[int, int], goal: np.ndarray) -> None:
        self.goal = goal.copy()
        self.path = shortest_path(self.geometry, cell, self.geometry.xy_to_cell(goal))
        self.waypoints = [self.geometry.cell_to_xy(c) for c in self.path[1:-1]] + [self.goal]
        self.index = 0

    def _on_plan(self, cell: tuple[int, int]) -> bool:
        """Whether ``cell`` is the one being left or the one being entered."""
        return cell in self.path[self.index:self.index + 2]

    def __call__(self, observation: dict) -> np.ndarray:
        state = np.asarray(observation["observation"], dtype=np.float64)
        xy, velocity = state[:2], state[2:4]
        goal = np.asarray(observation["desired_goal"], dtype=np.float64)
        cell = self.geometry.xy_to_cell(xy)
        if not self.geometry.is_free(cell):  # only when pressed into a wall's edge: the free cell beside it
            cell = min(self.geometry.free_cells(), key=lambda c: np.linalg.norm(self.geometry.cell_to_xy(c) - xy))
        if self.goal is None or not np.array_equal(goal, self.goal) or not self._on_plan(cell):
            self._plan(cell, goal)
        while (self.index < len(self.waypoints) - 1
               and np.linalg.norm(self.waypoints[self.index] - xy) < self.waypoint_threshold):
            self.index += 1
        target = self.waypoints[self.index]
        return np.clip(self.kp * (target - xy) - self.kd * velocity, -1.0, 1.0)


# D4RL's own Maze2D controller (d4rl/pointmaze/waypoint_controller.py), whose returns D4RL's normalised
# scores are relative to: p_gain 10, d_gain -1, a waypoint counts as reached within 0.1 m while the point
# moved less than 0.1 m in the last step, and each intermediate waypoint is its cell centre shifted by
# up to 0.2 m per axis at random
D4RL_KP, D4RL_KD, D4RL_THRESHOLD, D4RL_STEP_THRESHOLD, D4RL_JITTER = 10.0, 1.0, 0.1, 0.1, 0.2


class D4RLWaypointController:
    """D4RL's Maze2D reference controller, run in our env: the shortest cell path to the goal, its
    cells' centres jittered by up to ``D4RL_JITTER`` as waypoints, the goal last; the PD law
    ``kp (waypoint - xy) - kd v`` (clipped to [-1, 1]) moves on to the next waypoint only once
    within ``D4RL_THRESHOLD`` of the current one *and* nearly still (less than
    ``D4RL_STEP_THRESHOLD`` moved in the last step), so it stops at every cell. That is the slow
    reference behind D4RL's (and Diffuser's) Maze2D scores; the jitter comes from ``seed``."""

    def __init__(self, geometry: MazeGeometry, seed: int = 0):
        self.geometry = geometry
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        self.goal: np.ndarray | None = None
        self.waypoints: list[np.ndarray] = []
        self.index = 0
        self.previous: np.ndarray | None = None

    def __call__(self, observation: dict) -> np.ndarray:
        state = np.asarray(observation["observation"], dtype=np.float64)
        xy, velocity = state[:2], state[2:4]
        goal = np.asarray(observation["desired_goal"], dtype=np.float64)
        if self.goal is None or not np.array_equal(goal, self.goal):
            self.goal, self.index = goal.copy(), 0
            cell = self.geometry.xy_to_cell(xy)
            if not self.geometry.is_free(cell):
                cell = min(self.geometry.free_cells(), key=lambda c: np.linalg.norm(self.geometry.cell_to_xy(c) - xy))
            path = shortest_path(self.geometry, cell, self.geometry.xy_to_cell(goal))
            self.waypoints = [self.geometry.cell_to_xy(c) - self.rng.uniform(size=2) * D4RL_JITTER
                              for c in path[1:-1]] + [goal]
            self.previous = xy.copy()
        moved = float(np.linalg.norm(xy - self.previous))
        target = self.waypoints[self.index]
        if (self.index < len(self.waypoints) - 1 and np.linalg.norm(target - xy) < D4RL_THRESHOLD
                and moved < D4RL_STEP_THRESHOLD):
            self.index += 1
        self.previous = xy.copy()
        return np.clip(D4RL_KP * (target - xy) - D4RL_KD * velocity, -1.0, 1.0)


class SwingUpController:
    """Energy-shaping swing-up plus a PD hold at the top for Pendulum-v1's ``(cos, sin, theta')``
    observations; returns a torque of shape ``(1,)`` in ``[-2, 2]``."""

    def reset(self) -> None:
        pass

    def __call__(self, observation) -> np.ndarray:
        cos, sin, rate = (float(v) for v in np.asarray(observation).reshape(-1)[:3])
        if cos > SWITCH:
            torque = -(HOLD_KP * np.arctan2(sin, cos) + HOLD_KD * rate)
        else:
            torque = SWING_GAIN * (15.0 - (0.5 * rate**2 + 15.0 * cos)) * rate
        return np.clip(np.array([torque]), -MAX_TORQUE, MAX_TORQUE)


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


class NoisyControllerPolicy:
    """A scripted controller plus Gaussian action noise of std ``noise`` drawn from ``rng`` (one
    draw per step, also when ``noise`` is 0), clipped to ``[low, high]``: the data's collection
    policy. The action stays float64."""

    def __init__(self, controller, noise: float, rng: np.random.Generator, low: float = -1.0, high: float = 1.0):
        self.controller, self.noise, self.rng, self.low, self.high = controller, noise, rng, low, high

    def reset(self, obs=None) -> None:
        self.controller.reset()

    def act(self, obs) -> np.ndarray:
        action = np.asarray(self.controller(obs))
        return np.clip(action + self.noise * self.rng.standard_normal(action.shape), self.low, self.high)


__all__ = ["BCPolicy", "ControllerPolicy", "D4RLWaypointController", "D4RL_KD", "D4RL_KP", "D4RL_THRESHOLD", "HOLD_KD",
           "HOLD_KP", "KD", "KP", "MAX_TORQUE", "NoisyControllerPolicy", "RandomPolicy", "SWING_GAIN", "SWITCH",
           "SwingUpController", "WAYPOINT_THRESHOLD", "WaypointController"]
