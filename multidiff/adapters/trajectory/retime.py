"""Plans of even pace: a sampled plan's path, re-timed to the fastest motion the data allows.

A diffusion model of noisy controller data plans the right *route* but an uneven *pace*: it
lingers, then rushes. A planner that must keep within the data's speeds then rejects the
rushing plans and executes late ones. :func:`retime_plan` keeps the route of a plan up to its
arrival and gives it a new timeline, the time-optimal one under three limits (the classic
path-parameterisation of robot motion):

- the speed along the path is at most ``speed`` (position units per step);
- the acceleration along it is at most ``accel`` (position units per step squared), from the
  point's current speed at step 0 down to rest at the goal;
- through a bend of curvature ``kappa`` the speed is at most ``sqrt(accel / kappa)`` (the same
  bound on the sideways acceleration).

The route is the plan's positions without their jitter: the steps at least ``KEEP`` top-speed
steps apart (:func:`thinned`; a sampled plan wobbles by centimetres to decimetres from step to
step), then ``SMOOTHING`` passes of neighbour averaging (:func:`smoothed`; the ends stay), which
rounds a sharp corner by up to a few decimetres (the planner's feasibility test still checks
the walls afterwards). The route is resampled at even arc-length spacing, the speed limit of
every arc point is swept forward (accelerating) and backward (braking), and the plan's new
states are read off at whole steps: positions along the route, velocities as the step-to-step
displacement over ``step_seconds``, every other feature carried along by arc length, and the
goal at rest after the new arrival step (reached at the end of a braking move, so nearly at rest).

The constants below were chosen on PointMaze Medium (10 episodes of seed 0; docs/rl.md has the
measurements and the held-out check).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

SPACING = 0.5  # arc-length spacing of the speed profile, in top-speed steps
MIN_POINTS = 9  # arc points however short the route: it speeds up and slows down between them
KEEP = 8.0  # the route runs through plan steps at least this many top-speed steps apart (and the arrival)
SMOOTHING = 8  # passes of (1, 2, 1) / 4 averaging over the kept points
BEND_STEPS = 4  # a bend's curvature is the turn over this many top-speed steps of arc on each side


def motion_limits(observations: np.ndarray, bounds: Sequence[slice], position_dims: Sequence[int],
                  velocity_dims: Sequence[int], quantile: float = 0.99) -> tuple[float, float]:
    """``(accel, step_seconds)`` of recorded motion: ``accel`` the ``quantile`` of the per-step change
    of the position features' step-to-step displacement (its largest values are collisions with
    walls, not the actuator's reach), and ``step_seconds`` the least-squares ratio of each
    displacement to the velocity recorded after it (``position[t+1] - position[t] = step_seconds *
    velocity[t+1]``). ``observations (N, S)``; ``bounds`` the episodes (rows not to difference across)."""
    position_dims, velocity_dims = list(position_dims), list(velocity_dims)
    if not position_dims or len(position_dims) != len(velocity_dims):
        raise ValueError(f"need one velocity feature per position feature, got {position_dims}, {velocity_dims}")
    changes, moves, rates = [], [], []
    for part in bounds:
        states = np.asarray(observations[part], np.float64)
        if len(states) < 3:
            continue
        move = np.diff(states[:, position_dims], axis=0)  # (n - 1, P)
        changes.append(np.abs(np.diff(move, axis=0)))
        moves.append(move)
        rates.append(states[1:, velocity_dims])
    if not changes:
        raise ValueError("no episode has three steps: the data give no accelerations")
    move, rate = np.concatenate(moves).ravel(), np.concatenate(rates).ravel()
    if not np.any(rate):
        raise ValueError("the velocity features are all zero: they do not give the position features' rate")
    accel = float(np.quantile(np.concatenate(changes), quantile))
    return accel, float(move @ rate / (rate @ rate))


def speed_profile(spacing: float, curvature: np.ndarray, *, speed: float, accel: float,
                  start_speed: float = 0.0) -> np.ndarray:
    """``(n,)`` the fastest speed at each of ``n`` arc points ``spacing`` apart (``curvature (n,)``
    the path's at each), starting at ``start_speed`` (capped by the limits) and ending at rest,
    under the limits of the module docstring."""
    cap = np.minimum(speed, np.sqrt(accel / np.maximum(curvature, 1e-12)))
    count = len(cap)
    u = cap.copy()
    u[0] = min(max(start_speed, 0.0), cap[0])
    u[-1] = 0.0
    for j in range(1, count):  # accelerating
        u[j] = min(u[j], np.sqrt(u[j - 1] ** 2 + 2 * accel * spacing))
    for j in range(count - 2, -1, -1):  # braking
        u[j] = min(u[j], np.sqrt(u[j + 1] ** 2 + 2 * accel * spacing))
    return u


def retime_plan(states: np.ndarray, arrival: int, *, position_dims: Sequence[int], velocity_dims: Sequence[int],
                speed: float, accel: float, step_seconds: float) -> tuple[np.ndarray, int] | None:
    """The plan ``states (H, S)`` (env units) re-timed along its path up to ``arrival`` (see the
    module docstring): ``(states (H, S), arrival)`` with the new arrival step, or None when the
    re-timed plan does not arrive within the ``H`` steps (keep the plan as it was)."""
    states = np.asarray(states, np.float64)
    horizon = len(states)
    pos, vel = list(position_dims), list(velocity_dims)
    if speed <= 0 or accel <= 0 or step_seconds <= 0:
        raise ValueError(f"need speed, accel and step_seconds > 0, got {speed}, {accel}, {step_seconds}")
    if not 1 <= arrival < horizon:
        raise ValueError(f"arrival must be in [1, {horizon - 1}], got {arrival}")
    kept = thinned(states[:arrival + 1, pos], KEEP * speed)  # the plan steps the path runs through
    path = smoothed(states[kept][:, pos], SMOOTHING)  # (m, P)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])  # (m,)
    length = float(arc[-1])
    goal = states[arrival].copy()
    goal[vel] = 0.0
    out = np.repeat(goal[None], horizon, axis=0)
    out[0] = states[0]
    if length < 1e-9:  # already on the goal
        return out, 1
    count = max(int(np.ceil(length / (SPACING * speed))), MIN_POINTS - 1) + 1
    points = np.linspace(0.0, length, count)  # (n,) evenly along the path
    spacing = float(points[1])
    along = np.stack([np.interp(points, arc, path[:, i]) for i in range(len(pos))], axis=1)  # (n, P)
    heading = step_seconds * states[0, vel]
    tangent = along[1] - along[0]
    start_speed = float(heading @ tangent / max(np.linalg.norm(tangent), 1e-12))
    u = speed_profile(spacing, bend(along, max(1, int(round(BEND_STEPS / SPACING)))), speed=speed, accel=accel,
                      start_speed=start_speed)
    elapsed = np.concatenate([[0.0], np.cumsum(2 * spacing / np.maximum(u[1:] + u[:-1], 1e-12))])  # steps to each point
    new_arrival = max(1, int(np.ceil(elapsed[-1] - 1e-9)))
    if new_arrival >= horizon:
        return None
    reached = distance_at(np.arange(new_arrival + 1, dtype=np.float64), elapsed, points, u)  # (k' + 1,)
    index = np.interp(reached, arc, kept)  # where the old plan was that far along
    rows = np.stack([np.interp(index, np.arange(arrival + 1), states[:arrival + 1, d])
                     for d in range(states.shape[1])], axis=1)
    for i, d in enumerate(pos):
        rows[:, d] = np.interp(reached, arc, path[:, i])
    rows[-1, pos] = goal[pos]
    rows[1:, vel] = np.diff(rows[:, pos], axis=0) / step_seconds  # the arrival step's too: the last, slow move
    rows[0] = states[0]
    out[:new_arrival + 1] = rows
    return out, new_arrival


def distance_at(times: np.ndarray, elapsed: np.ndarray, points: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Arc length reached at ``times`` (in steps) by a motion at speed ``u`` at arc ``points``, which it
    passes at ``elapsed``: constant acceleration between points, as :func:`speed_profile` assumes."""
    j = np.clip(np.searchsorted(elapsed, times, side="right") - 1, 0, len(points) - 2)
    tau = np.clip(times - elapsed[j], 0.0, None)
    span = np.maximum(elapsed[j + 1] - elapsed[j], 1e-12)
    rate = (u[j + 1] - u[j]) / span
    return np.minimum(points[j] + u[j] * tau + 0.5 * rate * tau ** 2, points[j + 1])


def thinned(path: np.ndarray, distance: float) -> np.ndarray:
    """Indices into ``path (k + 1, P)``: its first point, every later one at least ``distance`` from
    the last one kept, and its last point (always kept; the one before it is dropped when nearer)."""
    kept, last = [0], path[0]
    for i in range(1, len(path) - 1):
        if np.linalg.norm(path[i] - last) >= distance:
            kept.append(i)
            last = path[i]
    if len(path) > 1:
        if len(kept) > 1 and np.linalg.norm(path[-1] - path[kept[-1]]) < distance:
            kept.pop()
        kept.append(len(path) - 1)
    return np.asarray(kept)


def smoothed(points: np.ndarray, passes: int) -> np.ndarray:
    """``points (m, P)`` after ``passes`` rounds of replacing every inner point by a quarter of each
    neighbour plus half itself (the first and last points stay where they are)."""
    points = np.array(points, np.float64, copy=True)
    for _ in range(int(passes)):
        points[1:-1] = 0.25 * points[:-2] + 0.5 * points[1:-1] + 0.25 * points[2:]
    return points


def bend(points: np.ndarray, reach: int) -> np.ndarray:
    """``(n,)`` curvature of the path through ``points (n, P)`` (evenly spaced): the turn between
    the chords to the points ``reach`` before and after each, over their length."""
    count = len(points)
    if count < 3:
        return np.zeros(count)
    index = np.arange(count)
    before = points[index] - points[np.maximum(index - reach, 0)]
    after = points[np.minimum(index + reach, count - 1)] - points[index]
    lb, la = np.linalg.norm(before, axis=1), np.linalg.norm(after, axis=1)
    cos = np.einsum("ij,ij->i", before, after) / np.maximum(lb * la, 1e-12)
    turn = np.arccos(np.clip(cos, -1.0, 1.0))
    turn[(lb < 1e-12) | (la < 1e-12)] = 0.0
    return turn / np.maximum(0.5 * (lb + la), 1e-12)


__all__ = ["bend", "distance_at", "motion_limits", "retime_plan", "smoothed", "speed_profile", "thinned"]
