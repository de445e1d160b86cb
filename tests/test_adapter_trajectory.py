"""The trajectory adapter without training: the normaliser's round trip, start and goal kept exactly
by every sampler (plain and conditioned models, with value guidance), the planner acting in a real
PointMaze from an untrained model, value targets, the side networks' files, maze geometry (BFS paths,
the env's cell <-> xy convention), the waypoint expert in a real PointMaze, the package's layer
(nothing above it imported), and the errors on bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from multidiff.adapters import trajectory as A
from multidiff.backbones import UNet1D
from multidiff.core.precond import make_precond
from multidiff.core.samplers import SAMPLERS, default_sigmas
from multidiff.core.schedules import EDM

needs_gym = pytest.mark.requires("gymnasium")
needs_maze = pytest.mark.requires("pointmaze")

OBS, ACT, H = 4, 2, 16


def tiny_model(channels: int, seed: int = 0):
    torch.manual_seed(seed)
    unet = UNet1D(A.backbone_config(channels, H, "tiny"))
    for parameter in unet.parameters():  # untrained but not the zero function (its output convs start at 0)
        torch.nn.init.normal_(parameter, std=0.05)
    return make_precond("edm", unet, EDM(sigma_data=0.5), sigma_data=0.5).eval().requires_grad_(False)


def normalizer() -> A.Normalizer:
    rows = np.random.default_rng(0).uniform(-2, 2, size=(200, OBS + ACT))
    return A.Normalizer.fit(rows)


# ---------------------------------------------------------------- normalisation


@pytest.mark.parametrize("kind", A.NORMALIZERS)
def test_normaliser_round_trips_and_maps_the_data_range(kind):
    rows = np.random.default_rng(1).normal([0, 5, -3], [1, 10, 0.1], size=(500, 3))
    norm = A.Normalizer.fit(rows, kind)
    z = norm.encode(rows)
    np.testing.assert_allclose(norm.decode(z), rows, rtol=0, atol=1e-9)
    tensor = torch.as_tensor(rows, dtype=torch.float64)
    torch.testing.assert_close(norm.decode(norm.encode(tensor)), tensor)
    if kind == "limits":
        np.testing.assert_allclose(z.min(0), -1, atol=1e-12)
        np.testing.assert_allclose(z.max(0), 1, atol=1e-12)
    else:
        np.testing.assert_allclose(z.mean(0), 0, atol=1e-9)
        np.testing.assert_allclose(z.std(0), 1, atol=1e-9)
    # some features only, and a JSON round trip of the statistics
    np.testing.assert_allclose(norm.encode(rows[:, [2, 0]], dims=[2, 0]), z[:, [2, 0]])
    assert A.Normalizer.from_dict(norm.to_dict()) == norm


def test_normaliser_keeps_constant_features_finite_and_rejects_bad_data():
    rows = np.stack([np.linspace(0, 1, 10), np.full(10, 3.0)], axis=1)
    norm = A.Normalizer.fit(rows)
    assert norm.scale[1] == 1.0 and np.isfinite(norm.encode(rows)).all()
    with pytest.raises(ValueError, match="NaN"):
        A.Normalizer.fit(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="unknown normalizer"):
        A.Normalizer.fit(rows, "minmax")
    with pytest.raises(ValueError, match="expected 2 features"):
        norm.encode(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        A.step_rows({"observations": np.array([[0.0, np.inf]]), "actions": np.zeros((1, 1))})


# ---------------------------------------------------------------- conditioning is exact with every sampler


def plan_problem(batch: int = 3):
    norm = normalizer()
    first = torch.tensor(np.random.default_rng(2).uniform(-1.5, 1.5, size=(batch, OBS)), dtype=torch.float32)
    goal = torch.tensor(np.random.default_rng(3).uniform(-1.5, 1.5, size=(batch, 2)), dtype=torch.float32)
    known, mask = A.constraints(norm, H, OBS, first, goal, goal_dims=(0, 1), rest_dims=(2, 3))
    return norm, first, goal, known, mask


def test_constraints_place_the_start_and_the_goal_at_rest():
    norm, first, goal, known, mask = plan_problem()
    assert mask[:, 0, :OBS].eq(1).all() and mask[:, 0, OBS:].eq(0).all()
    assert mask[:, -1, :OBS].eq(1).all() and mask[:, 1:-1].eq(0).all()
    decoded = norm.decode(known.double())
    torch.testing.assert_close(decoded[:, 0, :OBS], first.double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(decoded[:, -1, :2], goal.double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(decoded[:, -1, 2:4], torch.zeros(3, 2, dtype=torch.float64), atol=1e-6, rtol=0)
    assert torch.equal(mask[0], A.condition_mask(H, OBS + ACT, OBS, goal_dims=(0, 1), rest_dims=(2, 3)))


@pytest.mark.parametrize("method", list(SAMPLERS))
@pytest.mark.parametrize("conditioned", [False, True])
def test_every_sampler_keeps_start_and_goal_exactly(method, conditioned):
    """The constraint is exact whatever the network: an untrained one suffices."""
    _, _, _, known, mask = plan_problem()
    if conditioned:
        model = tiny_model(OBS + ACT + int(mask[0].sum()))
        denoiser = A.ConditionedDenoiser(model, known[mask > 0].reshape(len(known), -1))
    else:
        denoiser = A.TrajectoryDenoiser(tiny_model(OBS + ACT))
    sigmas = default_sigmas(denoiser.schedule, 3, method).float()
    with torch.no_grad():
        x = A.sample_plans(denoiser, known, mask, sigmas, method=method, generator=torch.Generator().manual_seed(0))
    assert x.shape == known.shape and torch.isfinite(x).all()
    assert torch.equal(x[mask > 0], known[mask > 0])
    assert not torch.equal(x[mask == 0], known[mask == 0])  # the rest is sampled


def test_value_guidance_steers_and_keeps_the_constraint():
    _, _, _, known, mask = plan_problem(batch=4)
    denoiser = A.TrajectoryDenoiser(tiny_model(OBS + ACT))
    value = A.build_value_model(OBS + ACT, H, denoiser.schedule, preset="tiny").requires_grad_(False)
    sigmas = default_sigmas(denoiser.schedule, 4, "unipc").float()
    drawn = {}
    for scale in (0.0, 1.0):
        counter = A.CallCounter(denoiser)
        with torch.no_grad():
            drawn[scale] = A.sample_plans(counter, known, mask, sigmas, generator=torch.Generator().manual_seed(0),
                                          value=value, guidance_scale=scale)
        assert counter.calls == 4  # one network call per step, guided or not
        assert torch.equal(drawn[scale][mask > 0], known[mask > 0])
    assert not torch.allclose(drawn[0.0], drawn[1.0])


def test_window_loss_conditioned_and_plain():
    rows = torch.randn(100, OBS + ACT)
    mask = A.condition_mask(H, OBS + ACT, OBS, goal_dims=(0, 1))
    starts = {"start": torch.tensor([0, 10, 84])}
    for known_mask, channels in ((None, OBS + ACT), (mask, OBS + ACT + OBS + 2)):
        loss_fn = A.WindowLoss(rows, H, lambda sigma: torch.ones_like(sigma), known_mask)
        loss = loss_fn(tiny_model(channels), starts, torch.Generator().manual_seed(0))
        assert loss.shape == (3,) and torch.isfinite(loss).all()
    assert torch.equal(loss_fn.windows(torch.tensor([84]))[0], rows[84:100])


def test_returns_to_go_restart_at_episode_ends():
    rewards = np.array([1.0, 1.0, 1.0, 2.0, 2.0])
    ends = np.array([False, False, True, False, True])
    np.testing.assert_allclose(A.returns_to_go(rewards, ends, 0.5), [1.75, 1.5, 1.0, 3.0, 2.0])


# ---------------------------------------------------------------- the planner in a real env


def maze_settings(**overrides) -> A.PlannerSettings:
    options = dict(env_id="PointMaze_UMaze-v3", obs_dim=OBS, act_dim=ACT, horizon=H, action_low=(-1.0, -1.0),
                   action_high=(1.0, 1.0), env_kwargs={"continuing_task": True, "reset_target": False},
                   goal_dims=(0, 1), rest_dims=(2, 3), tracking="pd", position_dims=(0, 1), velocity_dims=(2, 3),
                   sample_steps=2)
    return A.PlannerSettings(**{**options, **overrides})


@needs_maze
def test_planner_acts_in_pointmaze_and_replans():
    settings = maze_settings(replan_every=5)
    planner = A.Planner(tiny_model(OBS + ACT), settings, normalizer())
    env = planner.make_env(seed=0)
    obs, _ = env.reset(seed=1)
    planner.reset(obs)
    for _ in range(12):
        action = planner.act(obs)
        assert action.shape == env.action_space.shape and action.dtype == np.float32
        assert np.all(action >= -1) and np.all(action <= 1)
        obs, *_ = env.step(action)
    assert len(planner.plans) == 3 and planner.denoiser_calls == [2, 2, 2]  # at steps 0, 5 and 10
    assert planner.plans[0]["observations"].shape == (H, OBS)
    np.testing.assert_allclose(planner.plans[0]["observations"][-1, :2], obs["desired_goal"], atol=1e-5)
    env.close()


@needs_maze
def test_planner_rejects_bad_observations():
    planner = A.Planner(tiny_model(OBS + ACT), maze_settings(), normalizer())
    env = planner.make_env()
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(3,\).*\(4,\)"):
        planner.act({**obs, "observation": obs["observation"][:3]})
    with pytest.raises(ValueError, match="desired_goal"):
        planner.act(obs["observation"])  # a goal planner needs the dict with the goal
    with pytest.raises(ValueError, match="NaN"):
        planner.act({**obs, "observation": np.full(4, np.nan)})
    env.close()


@needs_gym
def test_unknown_env_id_is_a_value_error():
    with pytest.raises(ValueError, match="unknown or unusable gymnasium env id 'NoSuchEnv-v0'"):
        A.make_env("NoSuchEnv-v0")


def test_planner_settings_are_checked():
    with pytest.raises(ValueError, match="unknown tracking"):
        maze_settings(tracking="mpc")
    with pytest.raises(ValueError, match="pd tracking needs one position"):
        maze_settings(position_dims=(0,))
    with pytest.raises(ValueError, match="unknown sampler"):
        maze_settings(sampler="rk45")
    with pytest.raises(ValueError, match="inverse dynamics"):
        A.Planner(tiny_model(OBS + ACT), maze_settings(tracking="inverse"), normalizer())
    assert A.PlannerSettings.from_dict(maze_settings().to_dict()) == maze_settings()


# ---------------------------------------------------------------- side networks: files in a run folder


def test_side_networks_keep_their_file_names_and_round_trip(tmp_path):
    net = A.build_mlp(6, 2, width=8, seed=3)
    torch.testing.assert_close(net.state_dict(), A.build_mlp(6, 2, width=8, seed=3).state_dict())
    A.save_mlp(net, tmp_path, A.BC_FILE, {"final_loss": 0.5, "steps": 3})
    assert (tmp_path / "bc_policy.safetensors").is_file() and (tmp_path / "bc_policy.json").is_file()
    loaded, info = A.load_mlp(tmp_path, A.BC_FILE)
    assert info == {"in_dim": 6, "act_dim": 2, "width": 8, "depth": 2, "final_loss": 0.5, "steps": 3}
    torch.testing.assert_close(loaded.state_dict(), net.state_dict())
    assert A.load_mlp(tmp_path, A.INVERSE_FILE) is None  # absent: None, not an error
    schedule = EDM(sigma_data=0.5)
    value = A.build_value_model(OBS + ACT, H, schedule, preset="tiny", seed=1)
    A.save_value_model(value, tmp_path, {"mean": 1.0, "std": 2.0, "discount": 0.9})
    assert (tmp_path / "value_model.safetensors").is_file()
    again, stats = A.load_value_model(tmp_path, schedule)
    assert stats == {"mean": 1.0, "std": 2.0, "discount": 0.9}
    x = torch.randn(2, H, OBS + ACT)
    torch.testing.assert_close(again(x, torch.ones(2)), value(x, torch.ones(2)))
    (tmp_path / "bc_policy.json").write_text("{not json")
    with pytest.raises(ValueError, match="bc_policy.safetensors.*damaged"):
        A.load_mlp(tmp_path, A.BC_FILE)


# ---------------------------------------------------------------- the layer


def test_the_adapter_imports_nothing_above_its_layer():
    """Importing the adapter loads no data, metrics, recipes or CLI module, and no gymnasium or
    matplotlib (they come in only when an env is made or a picture drawn)."""
    code = ("import sys, json, multidiff.adapters.trajectory; print(json.dumps(sorted(m for m in sys.modules if "
            "m.split('.')[0] in ('gymnasium', 'matplotlib', 'click') or m.startswith(('multidiff.data', "
            "'multidiff.metrics', 'multidiff.recipes', 'multidiff.cli')))))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    assert loaded == []


# 0 = free, 1 = wall; two rooms joined through (2, 3); (1, 6) is walled off
SMALL_MAP = [
    [1, 1, 1, 1, 1, 1, 1, 1],
    [1, 0, 0, 1, 0, 1, 0, 1],
    [1, 0, 0, 0, 0, 1, 1, 1],
    [1, 0, 1, 1, 0, 0, 0, 1],
    [1, 1, 1, 1, 1, 1, 1, 1],
]


# ---------------------------------------------------------------- shortest paths


def _is_walk(path, walls) -> bool:
    steps_ok = all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in zip(path, path[1:]))
    return steps_ok and all(SMALL_MAP[r][c] != 1 for r, c in path)


def test_shortest_path_is_a_shortest_walk_through_free_cells():
    path = A.shortest_path(SMALL_MAP, (3, 1), (3, 6))
    # the only way: up the left column, along row 2, down column 4, along row 3
    assert path == [(3, 1), (2, 1), (2, 2), (2, 3), (2, 4), (3, 4), (3, 5), (3, 6)]
    assert A.shortest_path(SMALL_MAP, (1, 4), (1, 4)) == [(1, 4)]
    back = A.shortest_path(SMALL_MAP, (3, 6), (1, 1))
    assert back[0] == (3, 6) and back[-1] == (1, 1) and _is_walk(back, SMALL_MAP)
    assert len(back) == 1 + 7  # 7 moves = |dr| + |dc|: a shortest walk never steps back


def test_shortest_path_accepts_the_env_cell_letters_and_a_geometry():
    lettered = [[1, 1, 1, 1], [1, "r", 0, 1], [1, 1, "g", 1], [1, 1, 1, 1]]
    assert A.shortest_path(lettered, (1, 1), (2, 2)) == [(1, 1), (1, 2), (2, 2)]
    geometry = A.MazeGeometry.from_map(SMALL_MAP)
    assert A.shortest_path(geometry, (3, 1), (1, 4)) == A.shortest_path(SMALL_MAP, (3, 1), (1, 4))


def test_shortest_path_errors_name_the_cells():
    with pytest.raises(ValueError, match=r"no path from cell \(3, 1\) to cell \(1, 6\)"):
        A.shortest_path(SMALL_MAP, (3, 1), (1, 6))
    with pytest.raises(ValueError, match=r"goal cell \(0, 0\) is a wall"):
        A.shortest_path(SMALL_MAP, (3, 1), (0, 0))
    with pytest.raises(ValueError, match=r"start cell \(9, 1\) is outside"):
        A.shortest_path(SMALL_MAP, (9, 1), (3, 1))


# ---------------------------------------------------------------- geometry against the env


@needs_maze
@pytest.mark.parametrize("maze", list(A.MAZES))
def test_cell_xy_round_trip_matches_the_env(maze):
    env = A.make_maze_env(maze)
    try:
        ours, theirs = A.maze_geometry(env), env.unwrapped.maze
        assert ours.walls.tolist() == [[cell == 1 for cell in row] for row in theirs.maze_map]
        rng = np.random.default_rng(0)
        for cell in ours.free_cells():
            xy = ours.cell_to_xy(cell)
            np.testing.assert_allclose(xy, theirs.cell_rowcol_to_xy(np.array(cell)), atol=1e-12)
            assert ours.xy_to_cell(xy) == cell
            for point in xy + rng.uniform(-0.49, 0.49, size=(5, 2)):  # anywhere inside the cell
                assert ours.xy_to_cell(point) == cell == tuple(theirs.cell_xy_to_rowcol(point))
    finally:
        env.close()


# ---------------------------------------------------------------- the controller


@needs_maze
@pytest.mark.parametrize("start", [(1, 1), (1, 3), (3, 3), (1, 2)])
def test_controller_reaches_the_goal_in_umaze(start):
    env = A.make_maze_env("umaze")
    controller = A.WaypointController(A.maze_geometry(env))
    try:
        observation, info = env.reset(seed=7, options={"reset_cell": np.array(start), "goal_cell": np.array([3, 1])})
        for _ in range(300):
            observation, _, _, _, info = env.step(controller(observation))
            if info["success"]:
                break
        assert info["success"], f"no success from {start} in 300 steps"
        assert controller.path[-1] == (3, 1)
    finally:
        env.close()
