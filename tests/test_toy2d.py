"""The toy 2-D recipe: data, an end-to-end run, and a short real training."""

import json

import pytest
import torch

from multidiff.data import TOY2D, make_toy2d
from multidiff.data.toy2d import normalisation
from multidiff.recipes import toy2d
from multidiff.recipes.toy2d import Toy2DConfig

TINY = dict(steps=20, batch_size=32, num_train=256, num_eval=128, sample_steps=4, width=16, depth=1)


@pytest.mark.parametrize("name", list(TOY2D))
def test_datasets_are_deterministic_labelled_and_unit_scale(name):
    a, b = make_toy2d(name, 4000, seed=7), make_toy2d(name, 4000, seed=7)
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["label"], b["label"])
    assert not torch.equal(a["x"], make_toy2d(name, 4000, seed=8)["x"])
    assert a["x"].shape == (4000, 2) and a["x"].dtype == torch.float32
    assert set(a["label"].tolist()) == set(range(TOY2D[name].num_classes))
    # the fixed normalisation gives mean 0 and overall variance 1 up to sampling error,
    # whose std is ~ 1/sqrt(n) = 0.016 for the mean (unit variance per point): 5 sigma
    tolerance = 5 / 4000**0.5
    assert a["x"].mean(0).abs().max() < tolerance
    assert abs(a["x"].var(0).mean() - 1) < 5 * tolerance  # the variance's own std is a few times larger


def test_normalisation_is_shared_by_all_draws():
    mean, std = normalisation("spiral")
    again = normalisation("spiral")
    assert torch.equal(mean, again[0]) and std == again[1]


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match="moons"):
        make_toy2d("moon", 10)
    with pytest.raises(ValueError, match="unknown dataset"):
        Toy2DConfig(dataset="moon")


def test_recipe_runs_end_to_end(tmp_path):
    threads = torch.get_num_threads()
    run_dir = toy2d.train(Toy2DConfig(**TINY), tmp_path / "run")
    assert torch.get_num_threads() == threads  # the recipe restores the thread count
    for name in ("config.json", "model.safetensors", "ema.safetensors", "metrics.jsonl", "eval.json", "samples.npz"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["recipe"] == "toy2d" and config["config"]["steps"] == TINY["steps"]
    log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == TINY["steps"]
    report = json.loads((run_dir / "eval.json").read_text())
    assert set(report["sliced_w2"]) == {"model", "gaussian_baseline", "real_floor"}
    model, loaded = toy2d.load_run(run_dir)
    assert loaded == Toy2DConfig(**TINY)
    samples = toy2d.sample(run_dir, num=10, seed=3)
    assert samples.shape == (10, 2) and torch.isfinite(samples).all()
    assert torch.equal(samples, toy2d.sample(run_dir, num=10, seed=3))


def test_training_is_reproducible(tmp_path):
    a = toy2d.train(Toy2DConfig(**TINY), tmp_path / "a")
    b = toy2d.train(Toy2DConfig(**TINY), tmp_path / "b")
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "ema.safetensors").read_bytes() == (b / "ema.safetensors").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["moons", "spiral"])
def test_short_training_beats_the_gaussian_baseline(tmp_path, dataset):
    """Half the default steps (~10 s on one CPU core each) already close most
    of the gap between the fitted Gaussian and the real-vs-real floor."""
    run_dir = toy2d.train(Toy2DConfig(dataset=dataset, steps=1500), tmp_path / dataset)
    report = json.loads((run_dir / "eval.json").read_text())
    for metric in ("sliced_w2", "energy"):
        d = report[metric]
        assert d["real_floor"] < d["gaussian_baseline"]  # the metric can tell the baseline from the data at all
        # the model removes at least 80% of the baseline's excess over the floor
        assert d["model"] - d["real_floor"] < 0.2 * (d["gaussian_baseline"] - d["real_floor"]), d
