"""Plans of even pace (multidiff.adapters.trajectory.retime): a plan's route re-timed to the fastest
motion within the data's speed and acceleration, and the planner that ranks plans by it."""

import numpy as np
import pytest

from multidiff.adapters import trajectory as A
from multidiff.adapters.trajectory.retime import bend, smoothed, speed_profile, thinned

SPEED, ACCEL, DT = 0.045, 0.0025, 0.01
POS, VEL = (0, 1), (2, 3)


def lingering_plan(horizon=256, arrival=200, jitter=0.0, seed=0):
    """A plan along an L (2 m right, then 2 m up) that creeps, then rushes (quadratic in time), with
    Gaussian jitter on the positions, at rest on (2, 2) after ``arrival``."""
    t = np.linspace(0, 1, arrival + 1)
    s = 4 * t ** 2
    states = np.zeros((horizon, 4))
    states[:arrival + 1, 0], states[:arrival + 1, 1] = np.minimum(s, 2), np.maximum(s - 2, 0)
    states[1:arrival, :2] += np.random.default_rng(seed).normal(0, jitter, (arrival - 1, 2))
    states[arrival:, :2] = 2.0
    states[1:arrival + 1, 2:] = np.diff(states[:arrival + 1, :2], axis=0) / DT
    return states


def distance_to_l(xy):
    """Distance of points ``(n, 2)`` from the L path."""
    first = np.hypot(xy[:, 0] - np.clip(xy[:, 0], 0, 2), xy[:, 1])
    second = np.hypot(xy[:, 0] - 2, xy[:, 1] - np.clip(xy[:, 1], 0, 2))
    return np.minimum(first, second)


@pytest.mark.parametrize("jitter", [0.0, 0.01])
def test_retimed_plan_keeps_the_route_within_the_speed_and_arrives_sooner(jitter):
    plan = lingering_plan(jitter=jitter)
    out, arrival = A.retime_plan(plan, 200, position_dims=POS, velocity_dims=VEL, speed=SPEED, accel=ACCEL,
                                 step_seconds=DT)
    assert out.shape == plan.shape
    assert 4 / SPEED < arrival < 140  # 4 m can not go faster than the top speed; the plan took 200 steps
    moves = np.diff(out[:arrival + 1, :2], axis=0)
    assert np.linalg.norm(moves, axis=1).max() <= SPEED * (1 + 1e-9)
    off = distance_to_l(out[:arrival + 1, :2])
    assert off.max() < 0.35  # the plan's route: the smoothing rounds the L's sharp corner, it takes no shortcut
    legs = np.hypot(out[:arrival + 1, 0] - 2, out[:arrival + 1, 1]) > 1.0  # a metre or more from the corner
    assert off[legs].max() < 0.06 + jitter
    np.testing.assert_allclose(out[1:arrival + 1, 2:], moves / DT)  # velocities: the moves over the step's time
    np.testing.assert_array_equal(out[0], plan[0])
    np.testing.assert_allclose(out[arrival:, :2], np.full((len(out) - arrival, 2), 2.0))  # at rest on the goal
    np.testing.assert_array_equal(out[arrival + 1:, 2:], 0.0)
    speeds = np.linalg.norm(moves, axis=1)
    # speeding up and slowing down along the route within the limit (a move that cuts across a kink of the
    # jittered route is a chord, shorter than the arc)
    assert np.abs(np.diff(speeds)).max() <= ACCEL * (1.05 if jitter == 0 else 2)
    assert speeds[:3].max() < 0.01 and speeds[-3:].max() < 0.01  # from rest to rest
    # it slows down for the bend: speed squared times curvature (the turn over 4 steps each side) stays near
    # the acceleration limit, where the plan's own speed would have given many times it
    curvature = bend(out[:arrival + 1, :2], 4)[1:-1]
    assert np.max((0.5 * (speeds[1:] + speeds[:-1])) ** 2 * curvature) <= 1.3 * ACCEL
    assert np.median(speeds) > 0.8 * SPEED  # and runs most of the way at the top speed


def test_retime_keeps_a_plan_that_does_not_fit_the_horizon_and_checks_its_input():
    plan = lingering_plan(horizon=64, arrival=60)
    assert A.retime_plan(plan, 60, position_dims=POS, velocity_dims=VEL, speed=SPEED, accel=ACCEL,
                         step_seconds=DT) is None  # 4 m take more than 63 steps at 0.045 m a step
    out, arrival = A.retime_plan(plan, 60, position_dims=POS, velocity_dims=VEL, speed=0.2, accel=0.02,
                                 step_seconds=DT)
    assert arrival < 60
    with pytest.raises(ValueError, match="arrival"):
        A.retime_plan(plan, 64, position_dims=POS, velocity_dims=VEL, speed=SPEED, accel=ACCEL, step_seconds=DT)
    with pytest.raises(ValueError, match="speed"):
        A.retime_plan(plan, 60, position_dims=POS, velocity_dims=VEL, speed=0, accel=ACCEL, step_seconds=DT)


def test_a_plan_already_on_its_goal_arrives_at_once():
    plan = np.zeros((16, 4))
    plan[:, :2] = 1.5
    plan[0, 2:] = 0.3
    out, arrival = A.retime_plan(plan, 9, position_dims=POS, velocity_dims=VEL, speed=SPEED, accel=ACCEL,
                                 step_seconds=DT)
    assert arrival == 1
    np.testing.assert_array_equal(out[0], plan[0])
    np.testing.assert_array_equal(out[1:, 2:], 0.0)


def test_a_route_shorter_than_one_step_at_top_speed_still_speeds_up_and_stops():
    plan = np.zeros((16, 4))
    plan[1:, 0] = 0.02  # 2 cm, one step at 0.045 m a step would overshoot
    out, arrival = A.retime_plan(plan, 9, position_dims=POS, velocity_dims=VEL, speed=SPEED, accel=ACCEL,
                                 step_seconds=DT)
    assert 1 < arrival < 9
    assert np.all(np.diff(out[:arrival + 1, 0]) > 0)
    assert out[arrival, 0] == pytest.approx(0.02)


def test_retime_starts_from_the_points_speed_along_the_route():
    plan = lingering_plan()
    moving = plan.copy()
    moving[0, 2] = 4.0  # already running along the first leg at 4 m/s
    _, still = A.retime_plan(plan, 200, position_dims=POS, velocity_dims=VEL, speed=SPEED, accel=ACCEL,
                             step_seconds=DT)
    out, running = A.retime_plan(moving, 200, position_dims=POS, velocity_dims=VEL, speed=SPEED, accel=ACCEL,
                                 step_seconds=DT)
    assert running < still
    assert np.linalg.norm(out[1, :2] - out[0, :2]) > 0.03


def test_speed_profile_is_the_fastest_under_each_limit():
    flat = speed_profile(0.01, np.zeros(401), speed=0.05, accel=0.001)  # 4 m: 1.25 m to speed up, 1.25 to stop
    assert flat[0] == 0 and flat[-1] == 0
    assert flat.max() == pytest.approx(0.05)
    assert np.all(np.diff(flat ** 2) <= 2 * 0.001 * 0.01 + 1e-12)  # accelerating within the limit
    assert np.all(-np.diff(flat ** 2) <= 2 * 0.001 * 0.01 + 1e-12)  # braking too
    bent = np.zeros(401)
    bent[300] = 4.0  # a bend of radius 0.25, 3 m on
    slowed = speed_profile(0.01, bent, speed=0.05, accel=0.001, start_speed=0.05)
    assert slowed[0] == pytest.approx(0.05)  # running already
    assert slowed[300] == pytest.approx(np.sqrt(0.001 / 4.0))
    assert slowed[180] == pytest.approx(0.05) and slowed[195] < 0.05  # braking for it from 1.125 m before it
    assert slowed[290] < 0.03


def test_bend_is_the_inverse_radius():
    angle = np.linspace(0, np.pi, 400)
    circle = 2.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    assert np.median(bend(circle, 10)) == pytest.approx(0.5, rel=0.01)
    line = np.stack([np.linspace(0, 3, 50), np.zeros(50)], axis=1)
    np.testing.assert_allclose(bend(line, 5), 0.0, atol=1e-9)


def test_thinned_drops_lingering_and_jitter_but_keeps_the_ends():
    path = np.array([[0, 0], [0.01, 0], [0.0, 0.01], [0.2, 0], [0.21, 0], [0.4, 0], [0.41, 0.0]])
    np.testing.assert_array_equal(thinned(path, 0.1), [0, 3, 6])


def test_smoothed_irons_out_a_zigzag_keeps_a_line_and_the_ends():
    x = np.linspace(0, 4, 21)
    zigzag = np.stack([x, 0.1 * (-1.0) ** np.arange(21)], axis=1)
    out = smoothed(zigzag, 4)
    np.testing.assert_array_equal(out[[0, -1]], zigzag[[0, -1]])
    assert np.abs(out[2:-2, 1]).max() < 0.015  # the zigzag's 0.1 m is gone (but next to the pinned ends)
    line = np.stack([x, 0.5 * x], axis=1)
    np.testing.assert_allclose(smoothed(line, 8), line, atol=1e-12)


def test_motion_limits_read_the_step_time_and_acceleration_of_recorded_motion():
    dt, rng = 0.02, np.random.default_rng(0)
    velocity = np.cumsum(rng.uniform(-1, 1, (500, 2)), axis=0) * 0.1  # each step changes it by <= 0.1
    position = np.cumsum(velocity, axis=0) * dt  # position[t] - position[t-1] = dt * velocity[t]
    observations = np.concatenate([position, velocity], axis=1)
    accel, step_seconds = A.motion_limits(observations, [slice(0, 250), slice(250, 500)], POS, VEL)
    assert step_seconds == pytest.approx(dt)
    assert 0.9 * 0.1 * dt < accel <= 0.1 * dt
    with pytest.raises(ValueError, match="velocity"):
        A.motion_limits(observations, [slice(0, 500)], POS, (2,))
