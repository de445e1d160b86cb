"""Trajectory data: the generator's determinism and cache, episode-respecting windows and the
checks on your own offline .npz; and the episode runner and scores of multidiff.metrics.trajectory
(the reference controller's baseline, D4RL's normalised score). Tests that step MuJoCo skip when
gymnasium-robotics is missing. The maze geometry and the waypoint controller are the adapter's
(tests/test_adapter_trajectory.py)."""

import importlib.util

import numpy as np
import pytest
import torch

from multidiff.adapters import trajectory as A
from multidiff.data import trajectory as T
from multidiff.metrics import trajectory as M

needs_gym = pytest.mark.requires("pointmaze")

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


# ---------------------------------------------------------------- the episode runner and its scores (metrics)


@needs_gym
def test_reference_baseline_reaches_every_goal_in_umaze():
    result = M.evaluate_controller("umaze", episodes_count=5, seed=1)
    assert result["max_steps"] == 300 and result["success_rate"] == 1.0 and 0 < result["mean_steps"] < 300


def test_normalised_score():
    assert M.normalised_score(50.0, 0.0, 200.0) == 25.0
    assert M.normalised_score(-300.0, -1200.0, -150.0) == pytest.approx(100 * 900 / 1050)
    assert M.normalised_score(1.0, 2.0, 2.0) is None


@needs_gym
def test_run_episodes_scores_every_policy_on_the_same_starts():
    env = A.make_maze_env("umaze")
    try:
        starts = M.episode_starts(env, 3, seed=0)
        assert [s["seed"] for s in starts] == [s["seed"] for s in M.maze_episodes(env, 3, seed=0)]
        expert = A.ControllerPolicy(A.WaypointController(A.maze_geometry(env)))
        full = M.run_episodes(env, expert, starts, max_steps=300, record=2)
        stopped = M.run_episodes(env, expert, starts, max_steps=300, record=1, stop_on_success=True)
        random = M.run_episodes(env, A.RandomPolicy([-1, -1], [1, 1], seed=0), starts, max_steps=300)
    finally:
        env.close()
    assert full["has_success"] and all(full["successes"]) and len(full["paths"]) == 2
    # stopping at the first success changes nothing before it, and the episode ends there
    assert stopped["steps_to_success"] == full["steps_to_success"]
    assert len(stopped["paths"][0]["states"]) == stopped["steps_to_success"][0] + 1
    assert len(full["paths"][0]["states"]) == 300 + 1
    scores = M.policy_scores({"reference": full, "random": random})
    assert scores["reference"]["normalised_score"] == 100.0 and scores["random"]["normalised_score"] == 0.0
    assert scores["reference"]["success_rate"] == 1.0
    assert scores["reference"]["mean_steps_to_success"] == pytest.approx(np.mean(full["steps_to_success"]))
