"""Trajectory data: BFS paths, the env's cell <-> xy convention, the waypoint controller in a real
PointMaze, the generator's determinism and cache, episode-respecting windows and the checks on
your own offline .npz. Tests that step MuJoCo skip when gymnasium-robotics is missing."""

import importlib.util

import numpy as np
import pytest
import torch

from multidiff.data import trajectory as T

needs_gym = pytest.mark.skipif(importlib.util.find_spec("gymnasium_robotics") is None
                               or importlib.util.find_spec("mujoco") is None,
                               reason="needs PointMaze: pip install gymnasium-robotics mujoco")

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
    path = T.shortest_path(SMALL_MAP, (3, 1), (3, 6))
    # the only way: up the left column, along row 2, down column 4, along row 3
    assert path == [(3, 1), (2, 1), (2, 2), (2, 3), (2, 4), (3, 4), (3, 5), (3, 6)]
    assert T.shortest_path(SMALL_MAP, (1, 4), (1, 4)) == [(1, 4)]
    back = T.shortest_path(SMALL_MAP, (3, 6), (1, 1))
    assert back[0] == (3, 6) and back[-1] == (1, 1) and _is_walk(back, SMALL_MAP)
    assert len(back) == 1 + 7  # 7 moves = |dr| + |dc|: a shortest walk never steps back


def test_shortest_path_accepts_the_env_cell_letters_and_a_geometry():
    lettered = [[1, 1, 1, 1], [1, "r", 0, 1], [1, 1, "g", 1], [1, 1, 1, 1]]
    assert T.shortest_path(lettered, (1, 1), (2, 2)) == [(1, 1), (1, 2), (2, 2)]
    geometry = T.MazeGeometry.from_map(SMALL_MAP)
    assert T.shortest_path(geometry, (3, 1), (1, 4)) == T.shortest_path(SMALL_MAP, (3, 1), (1, 4))


def test_shortest_path_errors_name_the_cells():
    with pytest.raises(ValueError, match=r"no path from cell \(3, 1\) to cell \(1, 6\)"):
        T.shortest_path(SMALL_MAP, (3, 1), (1, 6))
    with pytest.raises(ValueError, match=r"goal cell \(0, 0\) is a wall"):
        T.shortest_path(SMALL_MAP, (3, 1), (0, 0))
    with pytest.raises(ValueError, match=r"start cell \(9, 1\) is outside"):
        T.shortest_path(SMALL_MAP, (9, 1), (3, 1))


# ---------------------------------------------------------------- geometry against the env


@needs_gym
@pytest.mark.parametrize("maze", list(T.MAZES))
def test_cell_xy_round_trip_matches_the_env(maze):
    env = T.make_maze_env(maze)
    try:
        ours, theirs = T.maze_geometry(env), env.unwrapped.maze
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


@needs_gym
@pytest.mark.parametrize("start", [(1, 1), (1, 3), (3, 3), (1, 2)])
def test_controller_reaches_the_goal_in_umaze(start):
    env = T.make_maze_env("umaze")
    controller = T.WaypointController(T.maze_geometry(env))
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


@needs_gym
def test_reference_baseline_reaches_every_goal_in_umaze():
    result = T.evaluate_controller("umaze", episodes_count=5, seed=1)
    assert result["max_steps"] == 300 and result["success_rate"] == 1.0 and 0 < result["mean_steps"] < 300


# ---------------------------------------------------------------- the generator and its cache


@pytest.fixture(scope="module")
def generated():
    if importlib.util.find_spec("gymnasium_robotics") is None:
        pytest.skip("needs PointMaze: pip install gymnasium-robotics mujoco")
    return T.generate_maze_dataset("umaze", steps=3000, seed=0, episode_steps=1000)


@needs_gym
def test_generator_records_d4rl_fields_and_is_deterministic(generated):
    again = T.generate_maze_dataset("umaze", steps=3000, seed=0, episode_steps=1000)
    other = T.generate_maze_dataset("umaze", steps=3000, seed=1, episode_steps=1000)
    shapes = {"observations": (3000, 4), "actions": (3000, 2), "rewards": (3000,), "terminals": (3000,),
              "timeouts": (3000,), "goals": (3000, 2)}
    for name, shape in shapes.items():
        assert generated[name].shape == shape
        np.testing.assert_array_equal(generated[name], again[name])
    assert not np.array_equal(generated["observations"], other["observations"])
    assert not generated["terminals"].any()
    assert np.flatnonzero(generated["timeouts"]).tolist() == [999, 1999, 2999]
    assert np.abs(generated["actions"]).max() <= 1.0
    assert set(np.unique(generated["rewards"]).tolist()) <= {0.0, 1.0}
    assert T.goals_reached(generated) > 5  # a goal every ~85 steps with the default settings
    params = generated["params"]
    assert params["seed"] == 0 and params["env_id"] == "PointMaze_UMaze-v3" and params["noise"] == T.NOISE


@needs_gym
def test_rewards_and_goal_changes_follow_the_recorded_goal(generated):
    xy_next = generated["observations"][1:, :2]
    distance = np.linalg.norm(xy_next - generated["goals"][:-1], axis=1)
    inside = ~generated["timeouts"][:-1]  # the next row of a timeout is a reset
    # float32 storage: compare away from the 0.45 edge
    clear = inside & (np.abs(distance - T.SUCCESS_RADIUS) > 1e-4)
    np.testing.assert_array_equal(generated["rewards"][:-1][clear], (distance[clear] <= T.SUCCESS_RADIUS))
    changed = np.any(generated["goals"][1:] != generated["goals"][:-1], axis=1) & inside
    # new goals only once the old one is reached, nearly at rest
    assert np.all(distance[changed] <= T.GOAL_THRESHOLD + 1e-5)
    assert np.all(np.linalg.norm(generated["observations"][1:, 2:][changed], axis=1) <= T.GOAL_SPEED + 1e-5)


@needs_gym
def test_maze_dataset_cache_is_reused_and_rebuilt_when_damaged_or_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIDIFF_CACHE", str(tmp_path))
    calls = []
    real = T.generate_maze_dataset

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(T, "generate_maze_dataset", counting)
    first = T.load_maze_dataset("umaze", steps=1500, seed=3)
    path = tmp_path / "trajectory" / "umaze-1500-seed3.npz"
    assert path.is_file() and len(calls) == 1
    second = T.load_maze_dataset("umaze", steps=1500, seed=3)
    assert len(calls) == 1
    for name in ("observations", "actions", "rewards", "terminals", "timeouts", "goals"):
        np.testing.assert_array_equal(first[name], second[name])
    assert second["params"]["steps"] == 1500 and second["params"]["seed"] == 3

    with np.load(path, allow_pickle=False) as arrays:
        assert arrays["params"].dtype.kind == "U"  # JSON text, not a pickle

    path.write_bytes(path.read_bytes()[:1000])  # a torn file
    third = T.load_maze_dataset("umaze", steps=1500, seed=3)
    assert len(calls) == 2
    np.testing.assert_array_equal(third["observations"], first["observations"])

    stale = dict(third, params={**third["params"], "noise": 0.1})
    T.save_dataset(path, stale)
    T.load_maze_dataset("umaze", steps=1500, seed=3)
    assert len(calls) == 3


def test_unknown_maze_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown maze 'tiny'; choose one of umaze, medium, large"):
        T.generation_params("tiny")


# ---------------------------------------------------------------- episodes and windows


def _toy(lengths, ends_as="timeouts"):
    """Steps whose observation holds (episode id, step in episode)."""
    rows = [(e, t) for e, n in enumerate(lengths) for t in range(n)]
    observations = np.array(rows, np.float32)
    marks = np.zeros(len(rows), bool)
    marks[np.cumsum(lengths) - 1] = True
    other = np.zeros(len(rows), bool)
    return {"observations": observations, "actions": observations[:, :1] * 10,
            "rewards": np.zeros(len(rows), np.float32),
            "terminals": marks if ends_as == "terminals" else other,
            "timeouts": marks if ends_as == "timeouts" else other}


@pytest.mark.parametrize("stride", [1, 3])
def test_segments_never_cross_an_episode_end(stride):
    lengths, horizon = [5, 12, 3, 9, 8], 4
    for ends_as in ("timeouts", "terminals"):
        data = _toy(lengths, ends_as)
        assert [(s.start, s.stop) for s in T.episodes(data)] == [(0, 5), (5, 17), (17, 20), (20, 29), (29, 37)]
        windows = T.segments(data, horizon, stride)
        expected = sum((n - horizon) // stride + 1 for n in lengths if n >= horizon)
        assert windows.shape == (expected, horizon, 3) and windows.dtype == torch.float32
        episode_ids = windows[:, :, 0]
        assert torch.all(episode_ids == episode_ids[:, :1])  # one episode per window
        assert torch.all(windows[:, 1:, 1] - windows[:, :-1, 1] == 1)  # consecutive steps
        assert torch.all(windows[:, :, 2] == 10 * windows[:, :, 0])  # actions follow observations
        assert torch.all(windows[:, 0, 1] % stride == 0)


def test_unfinished_last_episode_and_too_long_horizon():
    data = _toy([6, 4])
    data["timeouts"][-1] = False  # the run stopped mid-episode
    assert [(s.start, s.stop) for s in T.episodes(data)] == [(0, 6), (6, 10)]
    assert T.segments(data, 4).shape[0] == 3 + 1
    with pytest.raises(ValueError, match="no episode has 7 steps"):
        T.segments(data, 7)


@needs_gym
def test_segments_of_generated_data_stay_inside_episodes(generated):
    windows = T.segments(generated, 64, stride=16)
    starts = T.window_starts(generated, 64, stride=16)
    assert windows.shape == (3 * ((1000 - 64) // 16 + 1), 64, 6)
    assert not np.any((starts // 1000) != ((starts + 63) // 1000))


# ---------------------------------------------------------------- your own offline dataset


def _write(path, **fields):
    np.savez(path, **fields)
    return path


def _good(n=20):
    rng = np.random.default_rng(0)
    timeouts = np.zeros(n, bool)
    timeouts[[9, n - 1]] = True
    return {"observations": rng.normal(size=(n, 4)), "actions": rng.uniform(-1, 1, (n, 2)),
            "rewards": rng.normal(size=n), "terminals": np.zeros(n, np.int64), "timeouts": timeouts}


def test_offline_dataset_loads_and_keeps_extra_fields(tmp_path):
    fields = _good()
    path = _write(tmp_path / "mine.npz", **fields, goals=np.zeros((20, 2)), note=np.array("hello"))
    data = T.load_offline_dataset(path)
    assert data["observations"].dtype == np.float32 and data["terminals"].dtype == bool
    assert data["goals"].shape == (20, 2) and "note" not in data
    assert [(s.start, s.stop) for s in T.episodes(data)] == [(0, 10), (10, 20)]
    no_timeouts = {k: v for k, v in fields.items() if k != "timeouts"}
    no_timeouts["terminals"] = fields["timeouts"].astype(np.float32)
    data = T.load_offline_dataset(_write(tmp_path / "terminals.npz", **no_timeouts))
    assert not data["timeouts"].any() and data["terminals"].sum() == 2


@needs_gym
def test_offline_loader_reads_a_generated_file(generated, tmp_path):
    path = T.save_dataset(tmp_path / "umaze.npz", generated)
    data = T.load_offline_dataset(path)
    np.testing.assert_array_equal(data["observations"], generated["observations"])
    assert len(T.episodes(data)) == 3
    assert data["params"]["seed"] == 0 and data["params"]["steps"] == 3000


@pytest.mark.parametrize("problem, match", [
    ("missing", r"bad\.npz: missing field 'actions'"),
    ("nan", r"bad\.npz: field 'observations' has 1 NaN or infinite values \(first at row 3\)"),
    ("inf", r"bad\.npz: field 'rewards' has 1 NaN or infinite values"),
    ("length", r"bad\.npz: field 'actions' has 19 rows but 'observations' has 20"),
    ("ndim", r"bad\.npz: field 'rewards' has shape \(20, 2\); it must be \(N,\)"),
    ("boundaries", r"bad\.npz: no episode boundary: 'terminals' and 'timeouts' are all False; mark the last step"),
    ("flags", r"bad\.npz: field 'terminals' must be boolean"),
])
def test_bad_offline_datasets_name_the_file_and_field(tmp_path, problem, match):
    fields = _good()
    if problem == "missing":
        del fields["actions"]
    elif problem == "nan":
        fields["observations"][3, 1] = np.nan
    elif problem == "inf":
        fields["rewards"][5] = np.inf
    elif problem == "length":
        fields["actions"] = fields["actions"][:19]
    elif problem == "ndim":
        fields["rewards"] = np.zeros((20, 2))
    elif problem == "boundaries":
        fields["timeouts"][:] = False
    elif problem == "flags":
        fields["terminals"] = np.full(20, 0.5)
    with pytest.raises(ValueError, match=match):
        T.load_offline_dataset(_write(tmp_path / "bad.npz", **fields))


def test_offline_dataset_file_problems(tmp_path):
    with pytest.raises(FileNotFoundError, match="no offline dataset at"):
        T.load_offline_dataset(tmp_path / "absent.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.npz"):
        T.load_offline_dataset(tmp_path / "junk.npz")
    objects = _good()
    objects["actions"] = np.array([None] * 20, dtype=object)
    np.savez(tmp_path / "pickled.npz", **objects)
    with pytest.raises(ValueError, match="without unpickling"):
        T.load_offline_dataset(tmp_path / "pickled.npz")
