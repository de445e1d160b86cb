"""The recipe base: one config hierarchy, one train skeleton, one registry."""

import json
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from multidiff.backbones import MLP, MLPConfig
from multidiff.recipes import RECIPES
from multidiff.recipes.base import ClassConditionalConfig, Domain, RecipeConfig, ScalableConfig, first
from multidiff.recipes.common import make_schedule, noise_embedding, seeded_model
from multidiff.recipes.registry import register
from multidiff.train.generate import draw


@dataclass(frozen=True)
class RingConfig(RecipeConfig):
    recipe: ClassVar[str] = "ring_test"
    dataset: str = "ring"
    steps: int = 4
    batch_size: int = 32
    sigma_data: float = 1.0
    num_train: int = 128
    threads: int = 1


class Ring(Domain):
    """A fifth domain in a few lines: points on a circle, an MLP, the mean radius as its figure."""

    name = "a ring"
    configs = {"ring_test": RingConfig}
    examples = "points"

    def load_data(self, config, *, progress=False):
        angle = torch.rand(config.num_train, generator=torch.Generator().manual_seed(config.seed)) * 6.2832
        return torch.stack([angle.cos(), angle.sin()], 1)

    def build_model(self, config, data):
        schedule = make_schedule(config.schedule, config.sigma_data)
        backbone = MLPConfig(dim=2, width=16, depth=1, embedding=noise_embedding(schedule))
        return seeded_model(lambda: MLP(backbone), config.seed, config.prediction, schedule, config.sigma_data)

    def training_set(self, config, data):
        return {"x": data}

    def after_training(self, run_dir, config, data, ema, *, progress):
        return {"mean_radius": float(_points(ema, 64, seed=0).norm(dim=1).mean())}


def _points(model, num, seed):
    sigmas = model.schedule.sigmas(4, "karras")
    return draw(model, (num, 2), sigmas, sampler="euler", generator=torch.Generator().manual_seed(seed))


def ring_domain() -> Ring:
    def sample(run_dir, *, num, seed=0, **options):
        return _points(domain.load_run(run_dir)[0], num, seed)

    def evaluate(run_dir, *, num=None, seed=0, **options):
        return {"mean_radius": float(sample(run_dir, num=num or 64, seed=seed).norm(dim=1).mean())}

    def write_samples(points, stem, run_dir=None):
        torch.save(points, f"{stem}.pt")
        return [f"{stem}.pt"]

    domain = Ring(sample=sample, evaluate=evaluate, write_samples=write_samples)
    return domain


def test_a_new_domain_trains_through_the_skeleton(tmp_path):
    domain = ring_domain()
    run_dir = domain.train(RingConfig(), tmp_path / "run")
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["steps"] == 4 and report["final_loss"] > 0 and "mean_radius" in report
    assert json.loads((run_dir / "config.json").read_text())["config"]["recipe"] == "ring_test"
    assert domain.read_config(run_dir) == RingConfig()
    model, config = domain.load_run(run_dir)
    assert config == RingConfig() and domain.verbs() == ()
    assert domain.evaluate(run_dir)["mean_radius"] == report["mean_radius"]  # the same seed, the same draw
    with pytest.raises(ValueError, match="exceeds the 128 training points"):
        domain.train(RingConfig(batch_size=500), tmp_path / "big")


def test_the_same_seed_trains_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    a, b = ring_domain().train(RingConfig(), tmp_path / "a"), ring_domain().train(RingConfig(), tmp_path / "b")
    weights_a, weights_b = load_file(a / "ema.safetensors"), load_file(b / "ema.safetensors")
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_register_refuses_a_duplicate_or_a_name_without_a_config():
    with pytest.raises(ValueError, match="registered twice"):
        register(RECIPES["toy2d"].domain, {"toy2d": "again"})
    with pytest.raises(ValueError, match="no config class"):
        register(ring_domain(), {"nosuch": "a recipe without a config"})
    with pytest.raises(ValueError, match="unknown verbs"):
        Ring(sample=print, evaluate=print, write_samples=print, fly=print)
    assert "nosuch" not in RECIPES


def test_every_recipe_config_shares_the_base_fields():
    for name, recipe in RECIPES.items():
        assert issubclass(recipe.config_class, RecipeConfig), name
        assert recipe.config_class.recipe == name
    conditional = {"digits", "spoken_digits", "wordnet", "superres", "notes"}
    assert all(issubclass(RECIPES[n].config_class, ClassConditionalConfig) for n in conditional)
    assert issubclass(RECIPES["pointmaze_umaze"].config_class, ScalableConfig)
    assert not issubclass(RECIPES["toy2d"].config_class, ScalableConfig)


def test_verbs_come_from_what_a_domain_defines():
    assert RECIPES["toy2d"].verbs() == ("calibrate",) and RECIPES["toy2d"].inpaint is None
    assert RECIPES["wordnet"].verbs() == ("inpaint", "infill", "calibrate")
    assert RECIPES["pointmaze_umaze"].verbs() == ("plan", "calibrate") and RECIPES["pointmaze_umaze"].plan
    assert RECIPES["digits"].sample_options == () and "keyword" in RECIPES["wordnet"].sample_options


def test_first_slices_batched_tensors_only():
    drawn = {"samples": torch.arange(10), "rate": 8000, "scalar": torch.tensor(1.0), "names": ["a", "b"]}
    cut = first(drawn, 3)
    assert cut["samples"].tolist() == [0, 1, 2] and cut["rate"] == 8000 and cut["scalar"].ndim == 0
    assert cut["names"] == ["a", "b"]
