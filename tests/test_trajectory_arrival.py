"""Plans that may arrive early (multidiff.adapters.trajectory.arrival): windows held at rest after a
random arrival step, the constraints every sampler keeps, the feasibility test and the earliest
feasible choice, the planner's deadline and warm start in a real PointMaze, and D4RL's reference
controller."""

import numpy as np
import pytest
import torch

from multidiff.adapters import trajectory as A
from multidiff.backbones import UNet1D
from multidiff.core.inpainting import sample_inpaint
from multidiff.core.precond import make_precond
from multidiff.core.samplers import default_sigmas
from multidiff.core.schedules import EDM

needs_maze = pytest.mark.requires("pointmaze")
OBS, ACT, H = 4, 2, 16
GOAL, REST = (0, 1), (2, 3)


def tiny_model(channels: int, seed: int = 0):
    torch.manual_seed(seed)
    unet = UNet1D(A.backbone_config(channels, H, "tiny"))
    for parameter in unet.parameters():  # untrained but not the zero function
        torch.nn.init.normal_(parameter, std=0.05)
    return make_precond("edm", unet, EDM(sigma_data=0.5), sigma_data=0.5).eval().requires_grad_(False)


def normalizer() -> A.Normalizer:
    return A.Normalizer.fit(np.random.default_rng(0).uniform(-2, 2, size=(200, OBS + ACT)))


def test_hold_after_keeps_the_path_then_rests_on_the_arrival_state():
    norm = normalizer()
    windows = torch.randn(3, H, OBS + ACT)
    arrival = torch.tensor([1, 7, H - 1])
    held = A.hold_after(windows, arrival, A.rest_row(norm), OBS, REST)
    zero = torch.as_tensor(norm.encode(np.zeros(OBS + ACT)), dtype=torch.float32)
    for b, k in enumerate(arrival.tolist()):
        torch.testing.assert_close(held[b, :k + 1], windows[b, :k + 1])  # the path up to k is the data's
        for t in range(k + 1, H):
            torch.testing.assert_close(held[b, t, :2], windows[b, k, :2])  # on the arrival position
            torch.testing.assert_close(held[b, t, 2:], zero[2:])  # at rest, no action (in env units: 0)


@pytest.mark.parametrize("method", ["euler", "heun", "unipc", "ddim"])
def test_every_sampler_keeps_start_goal_from_k_and_rest_after_it(method):
    norm = normalizer()
    start, goal = torch.tensor([[-1.0, 0.5, 0.2, -0.1]] * 3), torch.tensor([[1.5, -1.0]] * 3)
    arrival = torch.tensor([3, 8, H - 1])
    known, mask, cond = A.arrival_constraints(norm, H, OBS, start, goal, arrival, goal_dims=GOAL, rest_dims=REST)
    assert cond.shape == (3, OBS + len(GOAL))
    model = tiny_model(OBS + ACT + A.arrival_channels(OBS, GOAL))
    timeline = A.timeline(arrival, H)
    denoiser = A.ConditionedDenoiser(model, cond, timeline)
    plans = sample_inpaint(denoiser, known, mask, default_sigmas(model.schedule, 3, method), method=method,
                           generator=torch.Generator().manual_seed(0))
    rows = norm.decode(plans.double())
    torch.testing.assert_close(rows[:, 0, :OBS], start.double(), atol=1e-5, rtol=0)
    for b, k in enumerate(arrival.tolist()):
        torch.testing.assert_close(rows[b, k:, :2], goal[b].double().expand(H - k, -1), atol=1e-5, rtol=0)
        torch.testing.assert_close(rows[b, k + 1:, 2:], torch.zeros(H - k - 1, 4, dtype=torch.float64),
                                   atol=1e-5, rtol=0)
        assert not torch.allclose(rows[b, 1:k, :2], goal[b].double())  # before k the path is free


def test_arrival_loss_trains_on_held_windows_with_the_timeline_channel():
    rows = torch.randn(400, OBS + ACT)
    loss = A.ArrivalWindowLoss(rows, H, lambda sigma: torch.ones_like(sigma), obs_dim=OBS, goal_dims=GOAL,
                               rest_dims=REST, rest=torch.zeros(OBS + ACT), min_step=2)
    model = tiny_model(OBS + ACT + A.arrival_channels(OBS, GOAL)).train().requires_grad_(True)
    batch = {"start": torch.arange(0, 80, 10)}
    first = loss(model, batch, torch.Generator().manual_seed(0))
    again = loss(model, batch, torch.Generator().manual_seed(0))
    assert first.shape == (8,) and torch.isfinite(first).all()
    torch.testing.assert_close(first, again)  # every draw from the generator
    first.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="earliest arrival step"):
        A.ArrivalWindowLoss(rows, H, None, obs_dim=OBS, goal_dims=GOAL, rest_dims=REST, rest=torch.zeros(6),
                            min_step=H)


def test_violations_count_walls_and_jumps_up_to_arrival_only():
    walls = np.array([[1, 1, 1, 1], [1, 0, 0, 1], [1, 1, 1, 1]], bool)  # two free cells side by side
    geometry = A.MazeGeometry(walls)
    left, right = geometry.cell_to_xy((1, 1)), geometry.cell_to_xy((1, 2))
    path = np.linspace(left, right, H)
    plan = np.concatenate([path, np.zeros((H, 2))], axis=1)[None]  # (1, H, 4)
    change = np.abs(np.diff(plan[0], axis=0)).max(axis=0) + 1e-9
    assert A.plan_violations(plan, [H - 1], max_change=change, geometry=geometry).tolist() == [0]
    jumped = plan.copy()
    jumped[0, 5:, 0] += 0.3  # a jump at step 5, then a path shifted along the free corridor
    assert A.plan_violations(jumped, [H - 1], max_change=change, geometry=geometry)[0] >= 1
    assert A.plan_violations(jumped, [4], max_change=change, geometry=geometry)[0] == 0  # after arrival: ignored
    through_wall = plan.copy()
    through_wall[0, 6:9, 1] += 1.0  # three steps up into the wall row
    assert A.plan_violations(through_wall, [H - 1], geometry=geometry)[0] == 3
    assert A.wall_hits(geometry, np.array([[10.0, 0.0], left])).tolist() == [True, False]  # outside the maze


def test_out_of_walls_moves_only_points_near_walls_to_the_nearest_free_cell():
    walls = np.array([[1, 1, 1, 1], [1, 0, 0, 1], [1, 0, 1, 1], [1, 1, 1, 1]], bool)  # an L of three free cells
    geometry = A.MazeGeometry(walls)
    centre, margin = geometry.cell_to_xy((1, 1)), 0.1
    wall_cell = geometry.cell_to_xy((2, 2))  # free (1, 2) above it, free (2, 1) to its left
    xy = torch.tensor(np.array([centre, wall_cell + [0.0, 0.3], wall_cell + [-0.3, 0.0], [10.0, 0.0],
                                centre + [0.0, 0.47]]))
    moved = A.out_of_walls(geometry, xy, margin).numpy()
    np.testing.assert_allclose(moved[0], centre)  # far from every wall: untouched
    np.testing.assert_allclose(moved[1], wall_cell + [0.0, 0.5 + margin])  # up into (1, 2), margin inside
    np.testing.assert_allclose(moved[2], wall_cell + [-0.5 - margin, 0.0])  # left into (2, 1)
    np.testing.assert_allclose(moved[4], centre + [0.0, 0.5 - margin])  # in a free cell but too near the wall above
    assert not A.wall_hits(geometry, moved).any()
    plans = np.concatenate([moved, np.zeros((5, 2))], axis=1)[None]
    assert A.plan_violations(plans, [4], geometry=geometry, margin=margin - 1e-9)[0] == 0
    free = torch.tensor(np.array([centre]))
    assert A.out_of_walls(geometry, free, margin) is free  # nothing to move: the same tensor back


def test_wall_projection_keeps_denoised_plans_out_of_walls_without_extra_calls():
    walls = np.array([[1, 1, 1, 1], [1, 0, 0, 1], [1, 1, 1, 1]], bool)
    geometry = A.MazeGeometry(walls)
    norm = A.Normalizer("limits", (0.0,) * (OBS + ACT), (2.0,) * (OBS + ACT))
    wall_xy = norm.encode(np.r_[geometry.cell_to_xy((0, 1)), 0.0, 0.0, 0.0, 0.0])  # a point in the top wall row
    counter = A.CallCounter(lambda x, sigma: torch.as_tensor(wall_xy, dtype=x.dtype).expand_as(x).clone())
    projected = A.WallProjection(counter, norm, geometry, (0, 1), margin=0.1)
    out = projected(torch.zeros(2, H, OBS + ACT), torch.tensor(1.0))
    xy = norm.decode(out.double())[..., :2].numpy()
    assert counter.calls == 1 and not A.wall_hits(geometry, xy).any()
    np.testing.assert_allclose(xy[..., 1], geometry.cell_to_xy((1, 1))[1] + 0.5 - 0.1, atol=1e-6)
    np.testing.assert_array_equal(out[..., 2:].numpy(), np.broadcast_to(wall_xy[2:], (2, H, 4)).astype(np.float32))


def test_earliest_feasible_and_the_arrival_grid():
    assert A.earliest_feasible(np.array([30, 10, 20]), np.array([0, 2, 0])) == 2
    assert A.earliest_feasible(np.array([30, 10, 20]), np.array([3, 1, 1])) == 1  # none feasible: fewest, earliest
    grid = A.arrival_grid(4, 127, 16)
    assert grid[0] == 4 and grid[-1] == 127 and len(grid) == 16 and np.all(np.diff(grid) > 0)
    assert A.arrival_grid(4, 2, 3).tolist() == [2, 2, 2] and A.arrival_grid(4, 50, 1).tolist() == [50]


def maze_settings(**overrides):
    options = dict(env_id="PointMaze_UMaze-v3", obs_dim=OBS, act_dim=ACT, horizon=H, action_low=(-1, -1),
                   action_high=(1, 1), env_kwargs=dict(A.MAZE_KWARGS), goal_dims=GOAL, rest_dims=REST, tracking="pd",
                   position_dims=(0, 1), velocity_dims=(2, 3), sample_steps=4, conditioned=True, arrival_min=2,
                   num_plans=4)
    return A.PlannerSettings(**{**options, **overrides})


@needs_maze
@pytest.mark.parametrize("warm_start", [0, 2])
def test_arrival_planner_keeps_its_deadline_and_warm_starts(warm_start):
    model = tiny_model(OBS + ACT + A.arrival_channels(OBS, GOAL))
    settings = maze_settings(replan_every=3, warm_start=warm_start, arrival_min=H - 4)  # arrivals after step 7
    planner = A.Planner(model, settings, normalizer())
    env = planner.make_env(seed=0)
    obs, _ = env.reset(seed=1)
    planner.reset(obs)
    for _ in range(7):
        obs, *_ = env.step(planner.act(obs))
    plans = planner.plans
    assert [p["t"] for p in plans] == [0, 3, 6] and planner.denoiser_calls[0] == 4
    assert planner.denoiser_calls[1:] == [warm_start or 4] * (len(plans) - 1)
    for earlier, later in zip(plans, plans[1:]):  # a replan arrives no later than the plan it replaces
        deadline = earlier["arrival"] - (later["t"] - earlier["t"])
        assert later["arrival"] <= (deadline if deadline >= settings.arrival_min else H - 1)
    first = plans[0]
    np.testing.assert_allclose(first["observations"][first["arrival"]:, :2],
                               np.broadcast_to(obs["desired_goal"], (H - first["arrival"], 2)), atol=1e-5)
    env.close()


def maze_start():
    """An untrained arrival model, and the state and goal of one U-Maze start."""
    model = tiny_model(OBS + ACT + A.arrival_channels(OBS, GOAL))
    env = A.Planner(model, maze_settings(), normalizer()).make_env(seed=0)
    obs, _ = env.reset(seed=1)
    env.close()
    state, goal = A.split_observation(obs, OBS)
    return model, state, goal


@needs_maze
def test_planner_with_wall_margin_samples_plans_clear_of_walls_at_the_same_cost():
    model, state, goal = maze_start()
    arrivals = A.arrival_grid(2, H - 1, 4)
    plans = {}
    for margin in (0.0, 0.1):
        planner = A.Planner(model, maze_settings(wall_margin=margin), normalizer(), seed=0)
        x, _ = planner.sample(np.repeat(state[None], 4, 0), np.repeat(goal[None], 4, 0), arrivals=arrivals)
        plans[margin] = planner.normalizer.decode(x.double()).numpy()[..., :OBS]
        assert planner.last_calls == 4
    clear = A.plan_violations(plans[0.1], arrivals, geometry=planner.geometry)
    assert clear.tolist() == [0, 0, 0, 0]
    assert A.plan_violations(plans[0.0], arrivals, geometry=planner.geometry).sum() > 0  # the untrained net hits walls
    with pytest.raises(ValueError, match="wall_margin"):
        maze_settings(wall_margin=-0.1)


@needs_maze
def test_retries_draw_more_batches_only_while_no_plan_is_feasible():
    model, state, goal = maze_start()
    first, _ = A.Planner(model, maze_settings(), normalizer(), seed=0).sample(  # what plan() draws first
        np.repeat(state[None], 4, 0), np.repeat(goal[None], 4, 0), arrivals=A.arrival_grid(2, H - 1, 4))
    chosen, calls = {}, {}
    for retries in (0, 2):  # the untrained net draws every plan of the first batch through a wall
        planner = A.Planner(model, maze_settings(retries=retries), normalizer(), seed=0)
        plan = planner.plan(state, goal)
        chosen[retries], calls[retries] = plan, planner.denoiser_calls[-1]
    assert calls[0] == 4 and calls[2] in (8, 12)  # one batch more, or two
    count = lambda p: int(A.plan_violations(p["observations"][None], np.array([p["arrival"]]),  # noqa: E731
                                            geometry=planner.geometry)[0])
    first_rows = planner.normalizer.decode(first.double()).numpy()[..., :OBS]
    fewest_first = A.plan_violations(first_rows, A.arrival_grid(2, H - 1, 4), geometry=planner.geometry).min()
    assert count(chosen[0]) == fewest_first > 0  # no retry: the best of the first batch
    if calls[2] == 8:  # it stopped after one retry: that batch had a feasible plan, and it was chosen
        assert count(chosen[2]) == 0
    else:  # the first batch is drawn alike, so retries never choose worse
        assert count(chosen[2]) <= fewest_first
    clear = A.Planner(model, maze_settings(retries=2, wall_margin=0.1), normalizer(), seed=0)
    clear.plan(state, goal)
    assert clear.denoiser_calls == [4]  # a feasible plan in the first batch: no retry
    with pytest.raises(ValueError, match="retries"):
        maze_settings(retries=-1)


@needs_maze
def test_planner_rejects_impossible_arrival_settings():
    with pytest.raises(ValueError, match="arrival_min"):
        maze_settings(arrival_min=H)
    with pytest.raises(ValueError, match="warm_start"):
        maze_settings(warm_start=5)
    with pytest.raises(ValueError, match="max_step_change"):
        maze_settings(max_step_change=(1.0,))


@needs_maze
def test_d4rl_reference_reaches_goals_and_stops_at_its_waypoints():
    from multidiff.metrics.trajectory import maze_episodes, run_episodes

    env = A.make_maze_env("umaze")
    geometry = A.maze_geometry(env)
    starts = maze_episodes(env, 6, 0)
    slow = run_episodes(env, A.ControllerPolicy(A.D4RLWaypointController(geometry)), starts)
    fast = run_episodes(env, A.ControllerPolicy(A.WaypointController(geometry)), starts)
    env.close()
    assert all(slow["successes"])
    assert np.mean(slow["steps_to_success"]) > np.mean(fast["steps_to_success"])  # it waits at every cell


def test_value_guidance_can_be_limited_to_low_noise_levels():
    model = tiny_model(OBS + ACT)
    denoiser = A.TrajectoryDenoiser(model)
    value = lambda x, sigma: x[..., 0].sum(dim=1)  # noqa: E731  (a value that grows with the first feature)
    guided = A.value_guided(denoiser, value, 1.0, sigma_max=0.5)
    x = torch.randn(2, H, OBS + ACT)
    high, low = torch.full((2,), 2.0), torch.full((2,), 0.3)
    torch.testing.assert_close(guided(x, high), denoiser(x, high))  # above the window: no guidance
    steered = guided(x, low) - denoiser(x, low)
    torch.testing.assert_close(steered[..., 0], torch.full((2, H), 0.3**2))  # scale sigma^2 grad V
    assert A.value_guided(denoiser, value, 0.0) is denoiser and A.value_guided(denoiser, None, 1.0) is denoiser


@needs_maze
def test_retimed_planner_follows_the_earliest_feasible_re_timed_route():
    model, state, goal = maze_start()
    limits = dict(max_step_change=(0.2, 0.2, 99.0, 99.0), step_accel=0.2, step_seconds=0.01)  # some fit 16 steps
    settings = maze_settings(retime=0.8, **limits)
    first, _ = A.Planner(model, settings, normalizer(), seed=0).sample(  # what plan() draws
        np.repeat(state[None], 4, 0), np.repeat(goal[None], 4, 0), arrivals=A.arrival_grid(2, H - 1, 4))
    planner = A.Planner(model, settings, normalizer(), seed=0)
    plan = planner.plan(state, goal)
    rows = planner.normalizer.decode(first.double()).numpy()
    retimed, arrivals, fits = [], [], []
    for row, k in zip(rows, A.arrival_grid(2, H - 1, 4)):
        done = A.retime_plan(row[:, :OBS], int(k), position_dims=(0, 1), velocity_dims=(2, 3), speed=0.8 * 0.2,
                             accel=0.8 * 0.2, step_seconds=0.01)
        retimed.append(row[:, :OBS] if done is None else done[0])  # too long for the horizon: as drawn
        arrivals.append(int(k) if done is None else done[1])
        fits.append(done is not None)
    violations = planner.violations(np.stack(retimed), np.array(arrivals))
    best = A.earliest_feasible(np.array(arrivals), violations)
    assert 0 < sum(fits) < 4 and fits[best]  # the untrained net's routes: some fit, some do not
    assert plan["arrival"] == arrivals[best]
    np.testing.assert_allclose(plan["observations"], retimed[best], atol=1e-5)
    moves = np.linalg.norm(np.diff(plan["observations"][:plan["arrival"] + 1, :2], axis=0), axis=1)
    assert moves.max() <= 0.8 * 0.2 + 1e-6
    with pytest.raises(ValueError, match="retime"):
        maze_settings(retime=0.8)  # without the data's motion limits
    with pytest.raises(ValueError, match="retime"):
        maze_settings(retime=1.5, **limits)
    with pytest.raises(ValueError, match="retime"):
        maze_settings(retime=0.8, tracking="actions", **limits)
