"""The trajectory adapter without training: the normaliser's round trip, start and goal kept exactly
by every sampler (plain and conditioned models, with value guidance), the planner acting in a real
PointMaze from an untrained model, value targets, and the errors on bad input."""

import importlib.util

import numpy as np
import pytest
import torch

from multidiff.adapters import trajectory as A
from multidiff.backbones import UNet1D
from multidiff.core.precond import make_precond
from multidiff.core.samplers import SAMPLERS, default_sigmas
from multidiff.core.schedules import EDM

needs_gym = pytest.mark.skipif(importlib.util.find_spec("gymnasium") is None, reason="needs gymnasium")
needs_maze = pytest.mark.skipif(importlib.util.find_spec("gymnasium_robotics") is None
                                or importlib.util.find_spec("mujoco") is None,
                                reason="needs PointMaze: pip install gymnasium-robotics mujoco")

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


def test_normalised_score():
    assert A.normalised_score(50.0, 0.0, 200.0) == 25.0
    assert A.normalised_score(-300.0, -1200.0, -150.0) == pytest.approx(100 * 900 / 1050)
    assert A.normalised_score(1.0, 2.0, 2.0) is None
