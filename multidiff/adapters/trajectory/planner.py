"""Diffuser's planning loop (Janner et al. 2022) in a gymnasium env.

A :class:`Planner` acts in a gymnasium env from the observations the env
returns (a dict with ``observation`` and ``desired_goal`` for goal envs such as
PointMaze, else an array), in one of three ways: ``tracking="pd"`` follows the
planned states with a PD law on position and velocity (Diffuser's Maze2D
controller; for point-mass envs whose actions push the position features),
``"inverse"`` takes the action a learned inverse dynamics model (Ajay et al.
2023) gives for the next planned state, ``"actions"`` executes the planned
actions. ``replan_every = K`` samples a new plan every K steps (receding
horizon, keeping the current plan's arrival deadline); 0 plans once per goal.
The planner samples ``num_plans`` plans in one batch and executes the one
:meth:`Planner.rank` picks: feasible first, then the earliest arrival (goal
reaching with a model trained on arrival steps, :mod:`.arrival`) or the
highest value (with a value model). With ``retime``, each plan's route is
first given the fastest timing the data's motion allows (:mod:`.retime`), and
the plans are ranked by that arrival.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import torch
from torch import nn

from ...core.guidance import Inpaint
from ...core.samplers import DEFAULT_METHOD, SAMPLERS, default_sigmas
from .arrival import WallProjection, arrival_constraints, arrival_grid, earliest_feasible, plan_violations
from .denoiser import CallCounter, ConditionedDenoiser, TrajectoryDenoiser, constraints, sample_plans, value_guided
from .env import is_maze, make_env, maze_geometry, split_observation
from .networks import INVERSE_FILE, BCNet, ValueModel, load_mlp, load_value_model
from .normalizer import Normalizer
from .retime import retime_plan

TRACKING = ("pd", "actions", "inverse")


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
    guidance_sigma_max: float = 0.0  # apply it only at noise levels sigma <= this; 0: at every level
    conditioned: bool = False  # the model takes the known values as extra channels (WindowLoss's known_mask)
    sampler: str = DEFAULT_METHOD
    sample_steps: int = 16
    # goal reaching with a model trained on arrival steps (multidiff.adapters.trajectory.arrival): the
    # plans of one batch arrive at steps spread over [arrival_min, deadline] and the earliest feasible one
    # is executed; 0: the goal at the last step (Diffuser's)
    arrival_min: int = 0
    max_step_change: tuple[float, ...] = ()  # the data's largest per-step change of each state feature
    warm_start: int = 0  # replanning: run only the last so many grid steps from the previous plan; 0: from noise
    arrival_radius: float = 0.1  # an arrival planner stops replanning once its plan has arrived and it is this near
    # in a maze: every denoised plan's positions that lie in a wall are moved this far inside the nearest free
    # cell, at every noise level (arrival.WallProjection; no extra network call); 0: off
    wall_margin: float = 0.0
    # when every plan of a batch is infeasible, sample up to this many more batches (fresh noise, the same
    # arrival steps) and rank them all together; each costs another batch's denoiser calls; 0: never
    retries: int = 0
    # goal reaching with pd tracking: follow each plan's route re-timed to the fastest motion within this fraction
    # of the data's top speed (max_step_change of the position features) and acceleration (step_accel), and rank
    # the plans by their re-timed arrival (.retime); 0: the model's own timing
    retime: float = 0.0
    step_accel: float = 0.0  # the data's acceleration of the position features, per step squared (retime)
    step_seconds: float = 0.0  # the step's length in the velocity features' time unit (velocity = move / this)

    def __post_init__(self):
        for name in ("goal_dims", "rest_dims", "position_dims", "velocity_dims", "action_low", "action_high",
                     "max_step_change"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.tracking not in TRACKING:
            raise ValueError(f"unknown tracking {self.tracking!r}; choose one of: {', '.join(TRACKING)}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of: {', '.join(SAMPLERS)}")
        for name in ("obs_dim", "act_dim", "horizon", "num_plans", "sample_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.arrival_min < self.horizon or not 0 <= self.warm_start <= self.sample_steps:
            raise ValueError(f"need 0 <= arrival_min < horizon ({self.horizon}) and 0 <= warm_start <= sample_steps "
                             f"({self.sample_steps}), got {self.arrival_min}, {self.warm_start}")
        if self.max_step_change and len(self.max_step_change) != self.obs_dim:
            raise ValueError(f"max_step_change needs {self.obs_dim} entries, got {len(self.max_step_change)}")
        if self.wall_margin < 0:
            raise ValueError(f"wall_margin must be >= 0 (0: off), got {self.wall_margin}")
        if self.replan_every < 0 or self.guidance_scale < 0 or self.guidance_sigma_max < 0 or self.retries < 0:
            raise ValueError(f"need replan_every, guidance_scale, guidance_sigma_max and retries >= 0, got "
                             f"{self.replan_every}, {self.guidance_scale}, {self.guidance_sigma_max}, {self.retries}")
        if not 0 <= self.retime <= 1:
            raise ValueError(f"retime must be in [0, 1] (a fraction of the data's speed; 0: off), got {self.retime}")
        if self.retime and not (self.tracking == "pd" and self.goal_dims and self.max_step_change
                                and self.step_accel > 0 and self.step_seconds > 0):
            raise ValueError(f"retime={self.retime} needs goal reaching with pd tracking and the data's motion limits "
                             f"(max_step_change, step_accel > 0, step_seconds > 0; a trajectory recipe measures them); "
                             f"set retime=0 for this planner")
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
        from ...train.checkpoint import from_pretrained  # a run folder is the training layer's format

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

    @property
    def arrives(self) -> bool:
        """Whether plans arrive at a chosen step (a model trained on arrival steps, goal reaching)."""
        return bool(self.settings.arrival_min and self.settings.goal_dims)

    def sample(self, states, goals=None, *, arrivals=None, start: torch.Tensor | None = None, sigmas=None,
               callback=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Plans ``(N, H, D)`` in model space from ``states (N, S)`` (and ``goals (N, G)``, in env
        units; for an arrival model reached at steps ``arrivals (N,)``, default ``H - 1``), and their
        values ``(N,)`` (None without a value model). ``start`` and ``sigmas``: a warm start from
        earlier plans down the tail of a grid (default: the run's full grid, from noise)."""
        s = self.settings
        known, mask = self.constraints(states, goals, arrivals)
        counter = CallCounter(self._network(known, mask))
        if sigmas is None:
            sigmas = self.grid()
        with torch.no_grad():
            network = self._projected(counter)
            x = sample_plans(network, known, mask, sigmas, method=s.sampler, generator=self.generator,
                             value=self.value, guidance_scale=s.guidance_scale, callback=callback,
                             start=start, guidance_sigma_max=s.guidance_sigma_max)  # (N, H, D)
            if isinstance(network, WallProjection):  # the sampler's last step mixes earlier outputs: project it too
                x = network.project(x)
            values = None
            if self.value is not None:
                values = self.value(x, torch.full((len(x),), float(self.model.schedule.sigma_min), device=self.device))
        self.last_calls = counter.calls
        return x, values

    def grid(self) -> torch.Tensor:
        """The run's noise levels for one plan: ``sample_steps`` steps of its sampler's default grid."""
        s = self.settings
        return default_sigmas(self.model.schedule, s.sample_steps, s.sampler).to(torch.float32)

    def constraints(self, states, goals=None, arrivals=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``known, mask (N, H, D)`` in model space for plans from ``states (N, S)`` (and ``goals
        (N, G)`` in env units, when the planner reaches goals; at steps ``arrivals (N,)`` for an
        arrival model, default ``H - 1``)."""
        s = self.settings
        first = torch.as_tensor(np.asarray(states), dtype=torch.float32, device=self.device)
        goal = None
        if s.goal_dims:
            if goals is None:
                raise ValueError(f"this planner reaches goals: give the env's desired_goal ({len(s.goal_dims)} values)")
            goal = torch.as_tensor(np.asarray(goals), dtype=torch.float32, device=self.device)
        if self.arrives:
            steps = np.full(len(first), s.horizon - 1) if arrivals is None else np.asarray(arrivals)
            known, mask, _ = arrival_constraints(self.normalizer, s.horizon, s.obs_dim, first, goal,
                                                 torch.as_tensor(steps, dtype=torch.long, device=self.device),
                                                 goal_dims=s.goal_dims, rest_dims=s.rest_dims)
            return known, mask
        return constraints(self.normalizer, s.horizon, s.obs_dim, first, goal, goal_dims=s.goal_dims,
                           rest_dims=s.rest_dims)

    def _network(self, known: torch.Tensor, mask: torch.Tensor):
        """The denoiser of plans whose known values are ``known (n, H, D)`` where ``mask (n, H, D)``
        (or ``(H, D)``) is 1: the network conditioned on them if it was trained so, else the plain
        one. An arrival model reads the start, the goal (known at the last step) and the timeline,
        which is where the goal's first feature is known, after step 0."""
        s = self.settings
        if not s.conditioned:
            return self.denoiser
        mask = mask.expand_as(known)
        if not self.arrives:
            return ConditionedDenoiser(self.model, known[:, mask[0] > 0])
        cond = torch.cat([known[:, 0, :s.obs_dim], known[:, -1, list(s.goal_dims)]], dim=1)
        timeline = mask[:, :, s.goal_dims[0]].clone()
        timeline[:, 0] = 0
        return ConditionedDenoiser(self.model, cond, timeline)

    def _projected(self, denoiser):
        """``denoiser`` with its plans kept out of the maze's walls when ``wall_margin > 0`` (in a maze)."""
        s = self.settings
        if s.wall_margin <= 0 or self.geometry is None:
            return denoiser
        return WallProjection(denoiser, self.normalizer, self.geometry, s.position_dims or (0, 1), s.wall_margin)

    def calibration_denoiser(self, mask: torch.Tensor):
        """The denoiser :meth:`sample` draws plans with, as a function ``(x, sigma, cond)`` of each
        draw's known values ``cond (n, H, D)`` (the ``known`` of :meth:`constraints`; ``mask (H,
        D)`` is the same for every draw), so a grid can be calibrated on any slice of a batch of
        plans: the conditioned network, value guidance when the run uses it, the constraints
        inpainted."""

        def denoiser(x, sigma, cond):
            network = self._projected(self._network(cond, mask.to(cond)))
            base = value_guided(network, self.value, self.settings.guidance_scale, self.settings.guidance_sigma_max)
            return Inpaint(base, mask.to(x), cond)(x, sigma)

        return denoiser

    def violations(self, observations: np.ndarray, arrivals: np.ndarray) -> np.ndarray:
        """``(N,)`` steps of each plan ``observations (N, H, S)`` (env units) up to its arrival that
        are infeasible: a state change beyond the data's (``max_step_change``) or, in a maze, a
        position in a wall (:func:`~.arrival.plan_violations`)."""
        s = self.settings
        return plan_violations(observations, arrivals, max_change=s.max_step_change, geometry=self.geometry,
                               position_dims=s.position_dims or (0, 1))

    @property
    def geometry(self):
        if not hasattr(self, "_geometry"):
            self._geometry = None
            if is_maze(self.settings.env_id):
                env = self.make_env()
                try:
                    self._geometry = maze_geometry(env)
                finally:
                    env.close()
        return self._geometry

    def rank(self, values: torch.Tensor | None, arrivals: np.ndarray | None, violations: np.ndarray) -> int:
        """The plan to execute, by one rule for every env: the feasible plans first (fewest
        violations), then the task's score: the earliest arrival for goal reaching with an arrival
        model, else the highest value (with a value model), else the first drawn."""
        if arrivals is not None:
            return earliest_feasible(arrivals, violations)
        score = np.zeros(len(violations)) if values is None else -values.double().cpu().numpy()
        return int(np.lexsort((np.arange(len(violations)), score, violations))[0])

    def plan(self, state: np.ndarray, goal: np.ndarray | None = None) -> dict:
        """Sample ``num_plans`` plans from ``state`` (and ``goal``) and return the one :meth:`rank`
        picks: ``observations (H, S)``, ``actions (H, A)`` in env units, ``value`` (normalised;
        None without a value model), ``arrival`` (its arrival step; ``H - 1`` for fixed-horizon
        plans) and ``x`` (model space). An arrival planner spreads the plans' arrival steps over
        ``[arrival_min, deadline]``; the deadline is ``H - 1``, or, when it replans towards the
        same goal, the current plan's arrival less the steps taken since (it keeps its deadline);
        with ``warm_start`` it then starts from that plan, shifted, down the grid's last steps. A
        deadline already passed (the point lagged behind its plan) is dropped: ``H - 1`` again."""
        s = self.settings
        start_time = time.perf_counter()
        states = np.repeat(np.asarray(state, np.float64)[None], s.num_plans, axis=0)
        goals = None if goal is None else np.repeat(np.asarray(goal, np.float64)[None], s.num_plans, axis=0)
        previous = self.current if self.current is not None and not self._goal_moved(goal) else None
        since = 0 if previous is None else self.t - previous["t"]
        arrivals, start, sigmas = None, None, None
        if self.arrives:  # keep the deadline; a plan that missed it (the point lags) starts afresh
            # (re-timed plans set their own pace: the model is asked for routes of every length)
            deadline = s.horizon - 1 if previous is None or s.retime else previous["arrival"] - since
            arrivals = arrival_grid(s.arrival_min, deadline if deadline >= s.arrival_min else s.horizon - 1,
                                    s.num_plans)
        if previous is not None and s.warm_start:
            shifted = torch.cat([previous["x"][since:], previous["x"][-1:].expand(since, -1)])[:s.horizon]
            start = shifted[None].expand(s.num_plans, -1, -1).to(self.device)
            sigmas = self.grid()[-(s.warm_start + 1):]
        xs, value_sets, row_sets, reaches, violations, calls = [], [], [], [], [], 0  # one entry per batch drawn
        while not violations or (len(violations) <= s.retries and violations[-1].min() > 0):  # none feasible
            x, values = self.sample(states, goals, arrivals=arrivals, start=start, sigmas=sigmas)
            rows = self.normalizer.decode(x.double().cpu()).numpy()  # (N, H, D)
            reach = np.full(s.num_plans, s.horizon - 1) if arrivals is None else arrivals
            if s.retime:
                rows, reach = self.retimed(rows, reach)
                x = torch.as_tensor(self.normalizer.encode(rows), dtype=x.dtype, device=x.device)
            xs.append(x)
            value_sets.append(values)
            row_sets.append(rows)
            reaches.append(reach)
            violations.append(self.violations(rows[..., :s.obs_dim], reach))
            calls += self.last_calls
        x, rows, reach = torch.cat(xs), np.concatenate(row_sets), np.concatenate(reaches)
        values = None if value_sets[0] is None else torch.cat(value_sets)
        best = self.rank(values, reach if self.arrives or s.retime else None, np.concatenate(violations))
        self.plan_seconds.append(time.perf_counter() - start_time)
        self.denoiser_calls.append(calls)
        return {"observations": rows[best, :, :s.obs_dim], "actions": rows[best, :, s.obs_dim:],
                "value": None if values is None else float(values[best]), "arrival": int(reach[best]),
                "x": x[best].cpu()}

    def retimed(self, rows: np.ndarray, arrivals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``rows (N, H, D)`` (env units) with each plan's route re-timed (:func:`~.retime.retime_plan`,
        at ``retime`` times the data's speed and acceleration) and the new ``arrivals (N,)``; a plan
        whose re-timed route does not fit the horizon keeps its own timing."""
        s = self.settings
        speed = s.retime * min(s.max_step_change[d] for d in s.position_dims)
        rows, arrivals = rows.copy(), np.array(arrivals, copy=True)
        for i in range(len(rows)):
            done = retime_plan(rows[i, :, :s.obs_dim], int(arrivals[i]), position_dims=s.position_dims,
                               velocity_dims=s.velocity_dims, speed=speed, accel=s.retime * s.step_accel,
                               step_seconds=s.step_seconds)
            if done is not None:
                rows[i, :, :s.obs_dim], arrivals[i] = done
        return rows, arrivals

    def _goal_moved(self, goal) -> bool:
        return (goal is None) != (self.goal is None) or (goal is not None and not np.array_equal(goal, self.goal))

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
        goal_moved = self._goal_moved(goal)
        since = self.t - self.current["t"] if self.current is not None else 0
        arrived = (self.arrives and self.current is not None and since >= self.current["arrival"]
                   and np.linalg.norm(state[list(s.goal_dims)] - goal) <= s.arrival_radius)
        if (self.current is None or goal_moved or (s.replan_every and since >= s.replan_every and not arrived)
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


__all__ = ["Planner", "PlannerSettings", "TRACKING"]
