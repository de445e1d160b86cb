"""The trajectory recipes end to end on tiny models: a PointMaze run (train, plan with the baselines,
the plan picture, sample, the Planner from the run folder in the real env) and a value-guided
Pendulum run on your own offline file, plus the errors on bad settings and bad data."""

import json

import numpy as np
import pytest

pytestmark = pytest.mark.requires("gymnasium", "pointmaze")

from multidiff.adapters.trajectory import Planner  # noqa: E402
from multidiff.data import trajectory as T  # noqa: E402
from multidiff.recipes import trajectory as R  # noqa: E402

TINY = dict(horizon=16, preset="tiny", steps=20, batch_size=8, warmup_steps=2, bc_steps=30, eval_episodes=2,
            sample_steps=2, threads=1, device="cpu", checkpoint_every=0)


@pytest.fixture(scope="module")
def maze_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trajectory")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MULTIDIFF_CACHE", str(folder / "cache"))
        config = R.PointMazeUMazeConfig(data_steps=3000, **TINY)
        return R.train(config, folder / "umaze")


@pytest.fixture(scope="module")
def pendulum_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pendulum") / "pendulum.npz"
    T.save_dataset(path, T.generate_pendulum_dataset(steps=1000, seed=0))
    return path


@pytest.fixture(scope="module")
def pendulum_run(pendulum_file, tmp_path_factory):
    config = R.PendulumConfig(dataset="file", data_path=str(pendulum_file), env_id="Pendulum-v1",
                              **{**TINY, "horizon": 8, "eval_episodes": 1}, value_steps=10, inverse_steps=30,
                              num_plans=3, replan_every=5, guidance_scale=0.1)
    return R.train(config, tmp_path_factory.mktemp("pendulum") / "run")


def test_maze_run_folder_and_its_evaluation(maze_run):
    for name in ("config.json", "ema.safetensors", "bc_policy.safetensors", "bc_policy.json", "eval.json",
                 "plan.png", "plan.json", "metrics.jsonl"):
        assert (maze_run / name).is_file(), name
    assert not (maze_run / "value_model.safetensors").exists()
    report = json.loads((maze_run / "eval.json").read_text())
    for key in ("success_rate", "mean_return", "normalised_score", "mean_steps_to_success", "plan_seconds",
                "train_seconds", "reference", "random", "bc"):
        assert key in report, key
    assert report["denoiser_calls_per_plan"] == 2 and 1 <= report["plans_per_episode"] <= 19  # a replan every 16
    assert report["reference"]["normalised_score"] == 100.0 and report["random"]["normalised_score"] == 0.0
    assert report["d4rl_reference"]["normalised_score_d4rl"] == 100.0 and "normalised_score_d4rl" in report
    assert 0 <= report["success_rate"] <= 1 and report["max_steps"] == 300
    assert report["arrival_min"] == 4 and report["num_plans"] == 16  # the goal at a chosen step, earliest feasible
    assert report["retime"] == 1.0  # the mazes' routes re-timed to the data's top speed
    saved = json.loads((maze_run / "config.json").read_text())
    assert len(saved["config"]["planner"]["max_step_change"]) == 4  # the data's speeds, for the feasibility test
    planner = saved["config"]["planner"]
    assert 0.001 < planner["step_accel"] < 0.005 and planner["step_seconds"] == pytest.approx(0.01, rel=1e-3)
    assert saved["model"]["backbone"]["in_channels"] == 6 + 4 + 2 + 1  # start, goal, timeline channels


def test_an_episode_loop_of_our_own_sees_what_plan_reports(maze_run):
    """The Planner contract (from_run, make_env, reset, act) drives exactly the behaviour `plan` measures."""
    from multidiff.metrics.trajectory import episode_starts

    report = R.plan(maze_run, episodes=2, seed=5)
    planner = Planner.from_run(maze_run, device="cpu", seed=5)
    env = planner.make_env()
    returns = []
    for start in episode_starts(env, 2, 5):
        obs, _ = env.reset(seed=start["seed"], options=start["options"])
        planner.reset(obs)
        total = 0.0
        for _ in range(report["max_steps"]):
            obs, reward, terminated, truncated, info = env.step(planner.act(obs))
            total += reward
            if terminated:
                break
        returns.append(total)
    env.close()
    assert np.mean(returns) == report["mean_return"]


def test_plan_reports_the_figures_and_draws_the_paths(maze_run, tmp_path):
    report = R.plan(maze_run, episodes=2, seed=3, sampler="ddim", steps=3)
    assert report["episodes"] == 2 and report["sampler"] == "ddim" and report["denoiser_calls_per_plan"] == 3
    assert json.loads(json.dumps(report)) == dict(report)  # JSON as it is
    assert len(report.paths["planner"]) == 2 and report.paths["walls"] is not None
    episode = report.paths["planner"][0]
    assert episode["states"].shape == (301, 4) and episode["plans"][0].shape == (16, 4)
    paths = R.write_plan(report, tmp_path / "plan", maze_run)
    assert [p.suffix for p in paths] == [".png", ".json"]
    assert json.loads((tmp_path / "plan.json").read_text())["mean_return"] == report["mean_return"]
    assert (tmp_path / "plan.png").stat().st_size > 1000
    again = R.plan(maze_run, episodes=2, seed=3, sampler="ddim", steps=3)
    assert again["mean_return"] == report["mean_return"]  # the same episodes and noise from the seed


def test_planner_from_the_run_acts_in_its_env(maze_run):
    planner = Planner.from_run(maze_run, device="cpu", sampler="euler", steps=2, replan_every=4)
    env = planner.make_env(seed=0)
    assert env.spec.id == "PointMaze_UMaze-v3" and env.unwrapped.continuing_task
    obs, _ = env.reset(seed=2)
    planner.reset(obs)
    for _ in range(6):
        action = planner.act(obs)
        assert action.shape == (2,) and action.dtype == np.float32 and np.all(np.abs(action) <= 1)
        obs, *_ = env.step(action)
    assert len(planner.plans) == 2 and planner.denoiser_calls == [2, 2]
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        planner.act({**obs, "observation": np.zeros(5)})
    with pytest.raises(ValueError, match="unknown planner option"):
        Planner.from_run(maze_run, horizon_steps=3)
    with pytest.raises(ValueError, match="value model"):
        Planner.from_run(maze_run, guidance_scale=1.0)
    env.close()


def test_sample_and_write_samples(maze_run, tmp_path):
    drawn = R.sample(maze_run, num=3, seed=1)
    assert drawn["observations"].shape == (3, 16, 4) and drawn["actions"].shape == (3, 16, 2)
    np.testing.assert_allclose(drawn["observations"][:, 0], drawn["starts"], atol=1e-5)
    np.testing.assert_allclose(drawn["observations"][:, -1, :2], drawn["goals"], atol=1e-5)
    paths = R.write_samples(drawn, tmp_path / "samples", maze_run)
    assert [p.name for p in paths] == ["samples.png", "samples.npz"]
    with pytest.raises(ValueError, match="not class-conditional"):
        R.sample(maze_run, num=1, label=0)
    with pytest.raises(ValueError, match="not class-conditional"):
        R.evaluate(maze_run, num=1, guidance=2.0)


def test_value_guided_pendulum_on_an_offline_file(pendulum_run):
    for name in ("value_model.safetensors", "inverse_dynamics.safetensors", "bc_policy.safetensors"):
        assert (pendulum_run / name).is_file(), name
    report = json.loads((pendulum_run / "eval.json").read_text())
    assert report["env_id"] == "Pendulum-v1" and report["success_rate"] is None
    assert report["tracking"] == "inverse" and report["guidance_scale"] == 0.1 and report["num_plans"] == 3
    assert report["plans_per_episode"] == 40  # 200 steps, a plan every 5
    assert set(report) >= {"reference", "random", "bc", "normalised_score"}
    planner = Planner.from_run(pendulum_run)
    env = planner.make_env(seed=0)
    obs, _ = env.reset(seed=0)
    planner.reset(obs)
    action = planner.act(obs)
    assert action.shape == (1,) and -2 <= action[0] <= 2
    assert planner.plans[0]["value"] is not None
    env.close()


def test_diffusers_unconditional_training_also_plans(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIDIFF_CACHE", str(tmp_path / "cache"))
    config = R.PointMazeUMazeConfig(data_steps=3000, conditioned=False, arrival_min=0,
                                    **{**TINY, "eval_episodes": 1, "bc_steps": 0})
    run = R.train(config, tmp_path / "plain")
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["backbone"]["in_channels"] == 6 and saved["config"]["planner"]["conditioned"] is False
    assert "bc" not in json.loads((run / "eval.json").read_text())
    assert np.isfinite(R.plan(run, episodes=1)["mean_return"])


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="unknown dataset 'tiny'"):
        R.PointMazeUMazeConfig(dataset="tiny")
    with pytest.raises(ValueError, match="dataset=file needs data_path"):
        R.PointMazeUMazeConfig(dataset="file")
    with pytest.raises(ValueError, match="needs a value model"):
        R.PointMazeUMazeConfig(guidance_scale=1.0)
    with pytest.raises(ValueError, match="divisible by 4"):
        R.PointMazeUMazeConfig(horizon=30)
    with pytest.raises(ValueError, match="inverse_steps"):
        R.PointMazeUMazeConfig(tracking="inverse")
    assert set(R.CONFIGS) == {"pointmaze_umaze", "pointmaze_medium", "pointmaze_large", "pendulum"}


def test_unknown_env_id_and_mismatched_or_nan_data(pendulum_file, tmp_path):
    config = dict(TINY, dataset="file", data_path=str(pendulum_file))
    with pytest.raises(ValueError, match="unknown or unusable gymnasium env id 'NoSuchEnv-v0'"):
        R.train(R.PendulumConfig(env_id="NoSuchEnv-v0", **config), tmp_path / "a")
    with pytest.raises(ValueError, match="3-d observations and 1-d actions, but PointMaze_UMaze-v3 has 4 and 2"):
        R.train(R.PendulumConfig(env_id="PointMaze_UMaze-v3", **config), tmp_path / "b")
    data = T.load_offline_dataset(pendulum_file)
    data["observations"][5, 1] = np.nan
    bad = tmp_path / "nan.npz"
    np.savez(bad, **{k: v for k, v in data.items() if k != "params"})
    with pytest.raises(ValueError, match="field 'observations' has 1 NaN"):
        R.train(R.PendulumConfig(**{**config, "data_path": str(bad)}, env_id="Pendulum-v1"), tmp_path / "c")


def test_pendulum_generator_is_deterministic_and_mixed():
    first, again = T.generate_pendulum_dataset(steps=600, seed=4), T.generate_pendulum_dataset(steps=600, seed=4)
    for name in ("observations", "actions", "rewards", "timeouts"):
        assert np.array_equal(first[name], again[name]), name
    assert not np.array_equal(first["actions"], T.generate_pendulum_dataset(steps=600, seed=5)["actions"])
    assert np.flatnonzero(first["timeouts"]).tolist() == [199, 399, 599]
    assert np.all(np.abs(first["actions"]) <= 2) and first["observations"].shape == (600, 3)


def test_cli_plan_prints_json_and_writes_the_picture(maze_run, tmp_path):
    import json

    from click.testing import CliRunner

    from multidiff.cli import main

    result = CliRunner().invoke(main, ["plan", str(maze_run), "--episodes", "2", "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in ("success_rate", "mean_return", "normalised_score", "reference", "random"):
        assert key in report, key
    assert (tmp_path / "p.png").is_file() and (tmp_path / "p.json").is_file()
    result = CliRunner().invoke(main, ["plan", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_cli_plan_takes_planner_settings(maze_run):
    import json

    from click.testing import CliRunner

    from multidiff.cli import main

    result = CliRunner().invoke(main, ["plan", str(maze_run), "--episodes", "1", "--set", "num_plans=2",
                                       "--set", "wall_margin=0.1", "--set", "retries=1", "--set", "retime=1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["num_plans"] == 2 and report["wall_margin"] == 0.1 and report["retries"] == 1
    assert report["retime"] == 1.0
    assert report["max_denoiser_calls_per_plan"] <= 2 * report["sample_steps"]  # at most one batch more
    result = CliRunner().invoke(main, ["plan", str(maze_run), "--set", "wall_marginn=0.1"])
    assert result.exit_code != 0 and "no setting 'wall_marginn'" in result.output
    result = CliRunner().invoke(main, ["plan", str(maze_run), "--set", "wall_margin=-1"])
    assert result.exit_code != 0 and "wall_margin must be >= 0" in result.output


def test_retries_is_a_recipe_field_the_planner_gets():
    from multidiff.recipes import get_recipe, make_config
    from multidiff.adapters.trajectory import MAZE_KWARGS, make_env
    from multidiff.recipes.trajectory.model import planner_settings

    recipe = get_recipe("pointmaze_umaze")
    config = make_config(recipe, {"retries": "3"})
    env = make_env(config.env_id_or_default, env_kwargs=dict(MAZE_KWARGS))
    try:
        assert planner_settings(config, env).retries == 3
        assert planner_settings(make_config(recipe, {}), env).retries == 0
    finally:
        env.close()
    with pytest.raises(ValueError, match="retries"):
        make_config(recipe, {"retries": "-1"})



def test_retime_is_a_recipe_field_on_by_default_for_the_mazes():
    from multidiff.recipes import get_recipe, make_config

    for name in ("pointmaze_umaze", "pointmaze_medium", "pointmaze_large"):
        assert make_config(get_recipe(name), {}).retime == 1.0
    assert make_config(get_recipe("pendulum"), {}).retime == 0.0
    assert make_config(get_recipe("pointmaze_umaze"), {"retime": "0.5"}).retime == 0.5
    with pytest.raises(ValueError, match="retime"):
        make_config(get_recipe("pointmaze_umaze"), {"retime": "1.5"})


def test_retime_needs_pd_tracking_of_goals(pendulum_file, tmp_path):
    config = R.PendulumConfig(dataset="file", data_path=str(pendulum_file), env_id="Pendulum-v1",
                              **{**TINY, "horizon": 8}, retime=1.0)
    with pytest.raises(ValueError, match="retime=1.0 needs goal reaching with pd tracking"):
        R.train(config, tmp_path / "run")


@pytest.mark.parametrize("which", ["maze", "pendulum"])
def test_calibrate_a_trajectory_run(which, maze_run, pendulum_run, tmp_path):
    """``multidiff calibrate`` on a trajectory run fits the grid to the planner's own denoiser (goal
    inpainting on the maze, value guidance on the pendulum), saves it, and the planner then uses it;
    the plans still start exactly at the episode's state."""
    import shutil

    import torch
    from click.testing import CliRunner

    from multidiff.cli import main
    from multidiff.core.samplers import default_sigmas
    from multidiff.train.checkpoint import load_grids

    copy = tmp_path / "run"
    shutil.copytree(maze_run if which == "maze" else pendulum_run, copy)
    result = CliRunner().invoke(main, ["calibrate", str(copy), "--steps", "3", "--num", "8", "--evals", "4"])
    assert result.exit_code == 0, result.output
    grid = load_grids(copy)[("unipc", 3)]
    info = json.loads((copy / "grids.json").read_text())["info"]["unipc"]["3"]
    assert info["rms_calibrated"] <= info["rms_default"] * (1 + 1e-9)
    planner = Planner.from_run(copy, sampler="unipc", steps=3)
    assert torch.equal(default_sigmas(planner.model.schedule, 3, "unipc"), grid)
    drawn = R.sample(copy, num=4, sampler="unipc", steps=3)
    np.testing.assert_allclose(drawn["observations"][:, 0], drawn["starts"], atol=1e-5)
