"""Plans that may arrive early: the goal at a variable step ``k`` of the window, at rest after it.

Diffuser fixes the goal at a plan's last step, so a planner following it arrives when the
horizon ends, not when it could. Here a goal-reaching model learns ``p(plan | start, goal, k)``:

- in training (:class:`ArrivalWindowLoss`) each window gets a random arrival step ``k`` in
  ``[min_step, H - 1]``; its own position at step ``k`` is the goal (hindsight relabelling),
  and every step after ``k`` is replaced by the goal at rest (the held features keep their
  step-``k`` value, the rest features and the actions take the model-space value of 0);
- the network reads the start and the goal as constant channels and the *timeline*
  ``1[t >= k]`` as one more channel (:func:`~.denoiser.with_condition`);
- at sampling (:func:`arrival_constraints`) the start, the goal from step ``k`` on and the rest
  after ``k`` are inpainted exactly, as the fixed-horizon constraints are.

A planner samples one batch of plans with several ``k`` and keeps the earliest that is feasible
(:func:`plan_violations`: inside the free cells, no faster than the data).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from .denoiser import WindowLoss
from .env import MazeGeometry
from .normalizer import Normalizer


def held_dims(obs_dim: int, rest_dims: Sequence[int]) -> list[int]:
    """The observation features that keep their arrival value after ``k`` (all but ``rest_dims``)."""
    return [d for d in range(obs_dim) if d not in set(rest_dims)]


def rest_row(normalizer: Normalizer) -> torch.Tensor:
    """``(D,)`` model-space row of zeros in env units: what the rest features and the actions hold
    after arrival (entries of the held features are unused)."""
    return torch.as_tensor(normalizer.encode(np.zeros(normalizer.dim)), dtype=torch.float32)


def timeline(arrival: torch.Tensor, horizon: int) -> torch.Tensor:
    """``(B, H)`` float: 1 from each plan's arrival step ``arrival (B,)`` on, else 0."""
    return (torch.arange(horizon, device=arrival.device)[None] >= arrival[:, None]).float()


def hold_after(windows: torch.Tensor, arrival: torch.Tensor, rest: torch.Tensor, obs_dim: int,
               rest_dims: Sequence[int]) -> torch.Tensor:
    """``windows (B, H, D)`` with every step after ``arrival (B,)`` at rest on the arrival state:
    the held features keep their step-``k`` value, the rest features and actions take ``rest``."""
    batch, horizon, dim = windows.shape
    after = torch.arange(horizon, device=windows.device)[None] > arrival[:, None]  # (B, H)
    at_k = windows[torch.arange(batch, device=windows.device), arrival]  # (B, D)
    target = rest.to(windows).expand(batch, dim).clone()
    keep = held_dims(obs_dim, rest_dims)
    target[:, keep] = at_k[:, keep]
    return torch.where(after[:, :, None], target[:, None, :].expand(-1, horizon, -1), windows)


class ArrivalWindowLoss(WindowLoss):
    """:class:`~.denoiser.WindowLoss` with a random arrival step per window (see the module
    docstring). The conditioned network's extra channels are the ``S`` start features, the ``G``
    goal features and the timeline: ``S + G + 1`` of them (:func:`arrival_channels`)."""

    def __init__(self, rows: torch.Tensor, horizon: int, weighting: Callable, *, obs_dim: int,
                 goal_dims: Sequence[int], rest_dims: Sequence[int], rest: torch.Tensor, min_step: int):
        super().__init__(rows, horizon, weighting)
        if not 1 <= min_step < horizon:
            raise ValueError(f"the earliest arrival step must be in [1, {horizon - 1}], got {min_step}")
        self.obs_dim, self.goal_dims, self.rest_dims = obs_dim, list(goal_dims), list(rest_dims)
        self.rest, self.min_step = rest, int(min_step)

    def __call__(self, model, batch: dict, generator: torch.Generator) -> torch.Tensor:
        windows = self.windows(batch["start"])  # (B, H, D)
        count = windows.shape[0]
        arrival = torch.randint(self.min_step, self.horizon, (count,), generator=generator,
                                device=generator.device).to(windows.device)
        held = hold_after(windows, arrival, self.rest, self.obs_dim, self.rest_dims)
        x0 = held.transpose(1, 2)  # (B, D, H)
        sigma = model.schedule.sample_sigmas(count, generator=generator, device=x0.device).to(x0.dtype)
        cond = torch.cat([held[:, 0, :self.obs_dim], held[torch.arange(count), arrival][:, self.goal_dims]], dim=1)
        return self.conditioned_loss(model, x0, sigma, cond, timeline(arrival, self.horizon), generator)


def arrival_channels(obs_dim: int, goal_dims: Sequence[int]) -> int:
    """Extra input channels of an arrival model: start, goal, timeline."""
    return obs_dim + len(goal_dims) + 1


def arrival_constraints(normalizer: Normalizer, horizon: int, obs_dim: int, first_obs: torch.Tensor,
                        goal: torch.Tensor, arrival: torch.Tensor, *, goal_dims: Sequence[int],
                        rest_dims: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``known, mask (B, H, D)`` in model space and the network's ``cond (B, S + G)`` for plans from
    ``first_obs (B, S)`` that reach ``goal (B, G)`` (env units) at step ``arrival (B,)`` and rest
    there: the start at step 0, the goal features from ``k`` on, the rest features and actions
    at 0 after ``k``."""
    goal_dims, rest_dims = list(goal_dims), list(rest_dims)
    batch, dim = first_obs.shape[0], normalizer.dim
    if first_obs.shape != (batch, obs_dim) or goal.shape != (batch, len(goal_dims)) or arrival.shape != (batch,):
        raise ValueError(f"need first_obs (B, {obs_dim}), goal (B, {len(goal_dims)}) and arrival (B,), got "
                         f"{tuple(first_obs.shape)}, {tuple(goal.shape)}, {tuple(arrival.shape)}")
    if int(arrival.min()) < 1 or int(arrival.max()) >= horizon:
        raise ValueError(f"arrival steps must be in [1, {horizon - 1}], got {arrival.tolist()}")
    device, dtype = first_obs.device, first_obs.dtype
    steps = torch.arange(horizon, device=device)[None]  # (1, H)
    from_k, after_k = steps >= arrival[:, None], steps > arrival[:, None]  # (B, H)
    known = torch.zeros(batch, horizon, dim, dtype=dtype, device=device)
    mask = torch.zeros_like(known)
    start, target = normalizer.encode(first_obs, range(obs_dim)), normalizer.encode(goal, goal_dims)
    known[:, 0, :obs_dim], mask[:, 0, :obs_dim] = start, 1
    for j, d in enumerate(goal_dims):  # the goal from step k on
        known[:, :, d] = torch.where(from_k, target[:, j, None].to(dtype), known[:, :, d])
        mask[:, :, d] = torch.where(from_k, 1.0, mask[:, :, d])
    rest = rest_row(normalizer).to(device=device, dtype=dtype)
    for d in rest_dims + list(range(obs_dim, dim)):  # at rest after it, no action
        known[:, :, d] = torch.where(after_k, rest[d], known[:, :, d])
        mask[:, :, d] = torch.where(after_k, 1.0, mask[:, :, d])
    cond = torch.cat([start.to(dtype), target.to(dtype)], dim=1)
    return known, mask, cond


def arrival_grid(earliest: int, deadline: int, count: int) -> np.ndarray:
    """``count`` arrival steps spread evenly over ``[earliest, deadline]`` (repeats allowed; one
    plan arrives at the deadline)."""
    earliest = int(deadline) if count == 1 else min(int(earliest), int(deadline))
    return np.rint(np.linspace(earliest, deadline, count)).astype(np.int64)


def plan_violations(states: np.ndarray, arrival: np.ndarray, *, max_change: Sequence[float] = (),
                    geometry: MazeGeometry | None = None, position_dims: Sequence[int] = (0, 1),
                    margin: float = 0.05, window: int = 16, slack: int = 4) -> np.ndarray:
    """How far each plan ``states (N, H, S)`` (env units) is from feasible up to its arrival step
    ``arrival (N,)`` (``H - 1`` for plans of fixed horizon): the number of steps ``t`` at which some
    feature moved, over the last ``n = min(t, window)`` steps, more than the data's largest step
    change ``max_change (S,)`` times ``n + slack`` (a speed test that the few centimetres of
    step-to-step jitter in a sampled plan do not trip, but a plan that would have to outrun the
    data does), plus, in a maze, the number of steps whose position within ``margin`` of it lies in
    a wall cell. 0: feasible."""
    states = np.asarray(states, np.float64)
    count, horizon = states.shape[:2]
    upto = np.arange(horizon)[None] <= np.asarray(arrival)[:, None]  # (N, H)
    bad = np.zeros((count, horizon), bool)
    if len(max_change):
        steps = np.arange(horizon)
        back = np.maximum(steps - window, 0)  # (H,)
        moved = np.abs(states - states[:, back])  # (N, H, S): over min(t, window) steps
        limit = (steps - back + slack)[:, None] * np.asarray(max_change, np.float64)  # (H, S)
        bad |= (moved > limit[None]).any(axis=2)
    if geometry is not None:
        bad[:, 1:] |= near_walls(geometry, states[:, 1:, list(position_dims)], margin)
    return (bad & upto).sum(axis=1)


def near_walls(geometry: MazeGeometry, xy: np.ndarray, margin: float) -> np.ndarray:
    """``(...)`` bool: whether each ``xy (..., 2)`` or one of the four points ``margin`` away from it
    diagonally lies in a wall cell or outside the maze."""
    hit = np.zeros(np.shape(xy)[:-1], bool)
    for dx, dy in ((0, 0), (margin, margin), (margin, -margin), (-margin, margin), (-margin, -margin)):
        hit |= wall_hits(geometry, xy + np.array([dx, dy]))
    return hit


def wall_hits(geometry: MazeGeometry, xy: np.ndarray) -> np.ndarray:
    """``(...)`` bool: whether each ``xy (..., 2)`` lies in a wall cell or outside the maze."""
    rows, cols = geometry.shape
    s = geometry.scaling
    col = np.floor(xy[..., 0] / s + cols / 2).astype(np.int64)
    row = np.floor(rows / 2 - xy[..., 1] / s).astype(np.int64)
    inside = (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
    hit = ~inside
    hit[inside] = geometry.walls[row[inside], col[inside]]
    return hit


def free_boxes(geometry: MazeGeometry, margin: float = 0.0) -> np.ndarray:
    """``(F, 4)`` ``[x_low, x_high, y_low, y_high]`` of every free cell, shrunk by ``margin`` on each side."""
    rows, cols = geometry.shape
    s = geometry.scaling
    boxes = [((c - cols / 2) * s + margin, (c + 1 - cols / 2) * s - margin,
              (rows / 2 - r - 1) * s + margin, (rows / 2 - r) * s - margin) for r, c in geometry.free_cells()]
    return np.array(boxes, np.float64).reshape(-1, 4)


def out_of_walls(geometry: MazeGeometry, xy: torch.Tensor, margin: float = 0.05) -> torch.Tensor:
    """``xy (..., 2)`` (world units) with every point that lies within ``margin`` of a wall cell (in
    it, or one of the four points ``margin`` away diagonally is, as :func:`plan_violations` tests) or
    outside the maze moved to the nearest point of a free cell at least ``margin`` inside it; the
    other points are returned unchanged."""
    hit = torch.as_tensor(near_walls(geometry, xy.detach().cpu().double().numpy(), margin), device=xy.device)
    if not hit.any():
        return xy
    boxes = torch.as_tensor(free_boxes(geometry, margin), dtype=xy.dtype, device=xy.device)  # (F, 4)
    points = xy[hit]  # (P, 2)
    nearest = torch.stack([torch.maximum(torch.minimum(points[:, None, 0], boxes[:, 1]), boxes[:, 0]),
                           torch.maximum(torch.minimum(points[:, None, 1], boxes[:, 3]), boxes[:, 2])], dim=-1)
    best = (nearest - points[:, None]).square().sum(-1).argmin(dim=1)  # (P,)
    out = xy.clone()
    out[hit] = nearest[torch.arange(len(points), device=xy.device), best]
    return out


class WallProjection:
    """A plan denoiser whose denoised plans keep out of the maze's walls: the positions
    (``position_dims``, model space, decoded by ``normalizer``) of its output that lie in a wall cell
    are moved to the nearest free point ``margin`` inside a free cell (:func:`out_of_walls`), at
    every noise level. No network call is added; the sampler then steers the plan around the wall
    as inpainting steers it onto the goal."""

    def __init__(self, denoiser, normalizer: Normalizer, geometry: MazeGeometry, position_dims: Sequence[int],
                 margin: float = 0.05):
        self.denoiser, self.normalizer, self.geometry = denoiser, normalizer, geometry
        self.dims, self.margin = list(position_dims), float(margin)

    def __call__(self, x, sigma, cond=None):
        return self.project(self.denoiser(x, sigma) if cond is None else self.denoiser(x, sigma, cond))

    def project(self, plans: torch.Tensor) -> torch.Tensor:
        """``plans (..., H, D)`` (model space) with their positions moved out of the walls."""
        xy = self.normalizer.decode(plans[..., self.dims].double(), self.dims)
        moved = out_of_walls(self.geometry, xy, self.margin)
        if moved is xy:
            return plans
        out = plans.clone()
        out[..., self.dims] = self.normalizer.encode(moved, self.dims).to(plans.dtype)
        return out


def earliest_feasible(arrival: np.ndarray, violations: np.ndarray) -> int:
    """The index of the earliest-arriving plan with no violation; without one, the plan with the
    fewest violations (the earliest among them)."""
    arrival, violations = np.asarray(arrival), np.asarray(violations)
    return int(np.lexsort((arrival, violations))[0])


__all__ = ["ArrivalWindowLoss", "WallProjection", "arrival_channels", "arrival_constraints", "arrival_grid",
           "earliest_feasible", "free_boxes", "held_dims", "hold_after", "near_walls", "out_of_walls",
           "plan_violations", "rest_row", "timeline", "wall_hits"]
