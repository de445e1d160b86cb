"""The command line: help, listings, train -> sample -> eval, and one-line errors."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from multidiff.cli import main
from multidiff.core.samplers import SAMPLERS
from multidiff.recipes import RECIPES, get_recipe, make_config

TINY = ["--steps", "10", "--batch-size", "32", "--set", "num_train=256", "--set", "num_eval=64",
        "--set", "sample_steps=3", "--set", "width=16", "--set", "depth=1"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = run("train", "toy2d", "--dataset", "spiral", "--out", out, *TINY)
    assert result.exit_code == 0, result.output
    return out


def test_help_lists_the_commands():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("train", "sample", "eval", "samplers", "recipes"):
        assert command in result.output


def test_samplers_lists_every_sampler_with_its_description():
    result = run("samplers")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == len(SAMPLERS)
    for line, (name, info) in zip(lines, SAMPLERS.items()):
        assert line.split()[0] == name and line.endswith(info.description)


def test_recipes_lists_every_recipe():
    result = run("recipes")
    assert [line.split()[0] for line in result.output.splitlines()] == list(RECIPES)


def test_recipe_scripts_train_registered_recipes():
    """Each script in recipes/ is ``multidiff train NAME`` for a registered NAME, named after it."""
    import re
    from pathlib import Path

    scripts = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.py"))
    assert scripts
    for script in scripts:
        names = re.findall(r'main\(\["train", "(\w+)"', script.read_text())
        assert names == [script.stem] and script.stem in RECIPES, script


def test_train_writes_a_run_and_reports_metrics(run_dir):
    for name in ("config.json", "model.safetensors", "ema.safetensors", "samples.png", "eval.json"):
        assert (run_dir / name).is_file()
    config = json.loads((run_dir / "config.json").read_text())["config"]
    assert config["dataset"] == "spiral" and config["steps"] == 10 and config["width"] == 16


def test_sample_writes_png_and_npz(run_dir, tmp_path):
    result = run("sample", run_dir, "--num", 50, "--sampler", "euler", "--steps", 4, "--seed", 1,
                 "--out", tmp_path / "s.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    with np.load(tmp_path / "s.npz") as data:
        assert data["samples"].shape == (50, 2) and np.isfinite(data["samples"]).all()


def test_eval_prints_json(run_dir):
    result = run("eval", run_dir, "--num", 64, "--steps", 3)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["num"] == 64 and report["sample_steps"] == 3
    assert set(report["energy"]) == {"model", "gaussian_baseline", "real_floor"}


BAD = [
    (["train", "nosuch"], "unknown recipe 'nosuch'"),
    (["train", "toy2d", "--dataset", "moon"], "unknown dataset 'moon'"),
    (["train", "toy2d", "--steps", "0"], "--steps"),
    (["train", "toy2d", "--no-such-option"], "No such option"),
    (["train", "toy2d", "--set", "width=wide"], "width expects an integer"),
    (["train", "toy2d", "--set", "colour=red"], "no setting 'colour'"),
    (["train", "toy2d", "--set", "width"], "KEY=VALUE"),
    (["sample", "{missing}", "--out", "x"], "does not exist"),
    (["sample", "{run}", "--sampler", "nosuch", "--out", "x"], "unknown sampler 'nosuch'"),
    (["sample", "{run}"], "Missing option '--out'"),
    (["eval", "{run}", "--sampler", "nosuch"], "unknown sampler 'nosuch'"),
    (["inpaint", "{run}", "--out", "x"], "recipe 'toy2d' does not inpaint"),
    (["sample", "{run}", "--temperature", "0.5", "--out", "x"], "recipe 'toy2d' does not take them"),
    (["eval", "{empty}"], "config.json"),
    (["eval", "{run}", "--num", "-3"], "--num"),
    (["nosuchcommand"], "No such command"),
]


@pytest.mark.parametrize("name", sorted(RECIPES))
@pytest.mark.parametrize("setting, message", [({"steps": "0"}, "steps must be >= 1, got 0"),
                                              ({"seed": "-1"}, "seed must be >= 0, got -1"),
                                              ({"lr": "0"}, "lr must be > 0, got 0.0"),
                                              ({"sampler": "nosuch"}, "unknown sampler 'nosuch'; choose one of")])
def test_every_recipe_config_names_the_bad_setting(name, setting, message):
    """One wording for the range checks of every recipe's config (recipes.common.check_fields)."""
    with pytest.raises(ValueError, match=re.escape(message)):
        make_config(get_recipe(name), setting)


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_gives_one_error_line(args, message, run_dir, tmp_path):
    args = [a.format(run=run_dir, missing=tmp_path / "missing", empty=tmp_path) for a in args]
    result = run(*args)
    assert result.exit_code != 0
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert message in result.stderr
    assert result.stdout == "" and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_corrupt_run_gives_one_error_line(run_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "model.safetensors"):
        (broken / name).write_bytes((run_dir / name).read_bytes())
    (broken / "ema.safetensors").write_bytes(b"garbage")
    result = run("eval", broken)
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "corrupt" in result.stderr


def test_console_entry_point_in_a_real_process(tmp_path):
    """The real process: one line on stderr, no traceback, status 1 (and 0 for --help)."""
    ok = subprocess.run([sys.executable, "-m", "multidiff", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "Usage:" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "multidiff", "eval", str(tmp_path / "nope")], capture_output=True,
                         text=True)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_calibrate_saves_grids_that_sampling_then_uses(tmp_path, run_dir):
    import shutil

    import torch

    from multidiff.core.samplers import default_sigmas
    from multidiff.train.checkpoint import from_pretrained, load_grids

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    result = run("calibrate", copy, "--steps", "3", "--steps", "4", "--num", "64", "--evals", "10")
    assert result.exit_code == 0, result.output
    grids = load_grids(copy)
    assert set(grids) == {("unipc", 3), ("unipc", 4)}
    info = json.loads((copy / "grids.json").read_text())["info"]["unipc"]["3"]
    assert info["rms_calibrated"] <= info["rms_default"] * (1 + 1e-9)  # the unseen quarter decides what is kept
    model = from_pretrained(copy).model
    assert torch.equal(default_sigmas(model.schedule, 3, "unipc"), grids[("unipc", 3)])
    # other step counts keep the spacing rule
    assert torch.equal(default_sigmas(model.schedule, 5, "unipc"), model.schedule.sigmas(5, "logsnr_jump"))
    # sampling through the CLI follows the calibrated grid: same seed, other draws than the uncalibrated run
    out = tmp_path / "s"
    assert run("sample", copy, "--num", "16", "--steps", "3", "--out", out).exit_code == 0
    assert run("sample", run_dir, "--num", "16", "--steps", "3", "--out", tmp_path / "d").exit_code == 0
    assert not np.allclose(np.load(f"{out}.npz")["samples"], np.load(tmp_path / "d.npz")["samples"])


def test_calibrate_errors_are_one_line(tmp_path, run_dir):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "grids.json").write_text("{not json")
    result = run("sample", copy, "--num", "4", "--out", tmp_path / "s")
    assert result.exit_code != 0 and "grids.json" in result.output and "Traceback" not in result.output
    result = run("calibrate", run_dir, "--sampler", "ddpm", "--steps", "3")
    assert result.exit_code != 0 and "stochastic" in result.output
