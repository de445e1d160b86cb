"""The image recipes end to end on tiny settings (digits, superres, fashion, folder), through
the CLI and the library, and their errors."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from multidiff.cli import main
from multidiff.data import ShuffledBatches
from multidiff.data.images import FASHION_MNIST_DIR, load_image_dataset
from multidiff.recipes import images, make_config, get_recipe
from multidiff.train import from_pretrained

# a few steps, a small evaluation, 1 thread: seconds per run
TINY = ["--batch-size", "32", "--set", "num_eval=40", "--set", "sample_steps=3", "--set", "threads=1",
        "--set", "sample_every=0", "--set", "checkpoint_every=0"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_error_line(result, message):
    assert result.exit_code != 0
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.output
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits") / "run"
    result = run("train", "digits", "--steps", 6, "--out", out, *TINY, "--set", "sample_every=3")
    assert result.exit_code == 0, result.output
    return out


def test_digits_run_folder(digits_run):
    for name in ("config.json", "model.safetensors", "ema.safetensors", "samples.png", "samples.npz", "eval.json",
                 "metrics.jsonl", "progress/step-0000003.png", "progress/step-0000006.png"):
        assert (digits_run / name).is_file(), name
    report = json.loads((digits_run / "eval.json").read_text())
    assert report["num"] == 40 and report["steps"] == 6 and report["guidance"] == images.DigitsConfig.guidance
    assert report["frechet"] > 0 and report["frechet_floor"] > 0 and 0 <= report["classifier_accuracy"] <= 1
    with np.load(digits_run / "samples.npz") as saved:
        assert saved["samples"].shape == (40, 1, 8, 8) and saved["labels"].tolist() == [i % 10 for i in range(40)]
    model, config = from_pretrained(digits_run)
    assert config["recipe"] == "digits" and model.backbone.config.num_classes == 10


def test_sample_label_and_guidance(digits_run, tmp_path):
    result = run("sample", digits_run, "--num", 12, "--label", 7, "--guidance", 2.5, "--steps", 3,
                 "--out", tmp_path / "sevens")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "sevens.npz") as saved:
        samples, labels = saved["samples"], saved["labels"]
    assert samples.shape == (12, 1, 8, 8) and samples.dtype == np.float32
    assert samples.min() >= 0 and samples.max() <= 1 and (labels == 7).all()
    grid = Image.open(tmp_path / "sevens.png")
    assert grid.size == (10 * 64 + 11 * 2, 2 * 64 + 3 * 2)  # 10 per row, 8x8 drawn as 64x64 cells, 2-px gaps


def test_guidance_changes_samples_and_one_is_the_plain_model(digits_run):
    plain = images.sample(digits_run, num=10, steps=3, guidance=1.0)["samples"]
    guided = images.sample(digits_run, num=10, steps=3, guidance=3.0)["samples"]
    assert not torch.equal(plain, guided)
    assert torch.equal(plain, images.sample(digits_run, num=10, steps=3, guidance=1.0)["samples"])


def test_eval_prints_json(digits_run):
    result = run("eval", digits_run, "--num", 20, "--steps", 2, "--guidance", 1.0)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["num"] == 20 and report["guidance"] == 1.0 and report["sample_steps"] == 2
    assert {"frechet", "frechet_floor", "classifier_accuracy", "frechet_over_floor"} <= set(report)


def test_inpaint_keeps_known_pixels_and_fills_the_hole(digits_run, tmp_path):
    result = run("inpaint", digits_run, "--num", 10, "--region", "center", "--steps", 3, "--out", tmp_path / "f")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "f.npz") as saved:
        filled, masked, reference, mask, labels = (torch.from_numpy(saved[k]) for k in
                                                   ("samples", "masked", "reference", "mask", "labels"))
    assert filled.shape == reference.shape == (10, 1, 8, 8) and mask.shape == (10, 1, 8, 8)
    assert mask.sum().item() == 10 * 48  # the centred 4x4 hole of each 8x8 digit
    assert torch.equal(filled * mask, reference * mask)  # the known pixels come back bit for bit
    assert torch.equal(masked, reference * mask)  # the input shows the hole black
    assert not torch.equal(filled * (1 - mask), masked * (1 - mask))  # the hole is filled
    test = load_image_dataset("digits").test
    picked = [int(np.argmin([(t - r).abs().sum() for t in test["x"]])) for r in reference]
    assert torch.equal(test["label"][picked], labels)  # real test images with their labels
    assert Image.open(tmp_path / "f.png").size == (10 * 64 + 11 * 2, 3 * 64 + 4 * 2)  # input, filled, original

    def fill(**options):
        return images.inpaint_test(digits_run, num=10, region="center", steps=3, **options)["samples"]

    unconditional = fill()
    assert torch.equal(unconditional, filled)  # the CLI is this call, seeded alike
    assert not torch.equal(fill(label=3, guidance=2.0), unconditional)
    guided = images.inpaint_test(digits_run, num=10, region="center", steps=3, reconstruction_scale=1.0)
    assert torch.equal(guided["samples"] * guided["mask"], guided["reference"] * guided["mask"])
    assert not torch.equal(guided["samples"], unconditional)


def test_resume_flag_continues_exactly(tmp_path):
    """A run that lost everything after its step-3 checkpoint, resumed with --resume, ends
    bit-identical to the uninterrupted run: label dropout draws from the engine's generator."""
    common = ["--steps", 6, "--batch-size", 16, "--set", "num_eval=10", "--set", "sample_steps=2", "--set",
              "threads=1", "--set", "sample_every=0", "--set", "label_dropout=0.5", "--set", "checkpoint_every=3"]
    out = tmp_path / "run"
    assert run("train", "digits", "--out", out, *common).exit_code == 0
    straight = from_pretrained(out, weights="model").model.state_dict()
    shutil.rmtree(out / "checkpoints" / "step-00000006")  # as if killed between step 3 and step 6
    for name in ("model.safetensors", "ema.safetensors", "config.json"):
        (out / name).unlink()
    resumed = run("train", "digits", "--out", out, "--resume", *common)
    assert resumed.exit_code == 0, resumed.output
    again = from_pretrained(out, weights="model").model.state_dict()
    assert straight.keys() == again.keys()
    for name in straight:
        assert torch.equal(straight[name], again[name]), name
    fresh = run("train", "digits", "--out", out, *common[:2], "--set", "num_eval=10", "--set", "threads=1")
    assert fresh.exit_code == 0  # without --resume the run starts over


def test_label_dropout_loss_drops_at_the_rate_and_replays():
    config = images.DigitsConfig(steps=1)
    model = images.build_model(config, (1, 8, 8), 10)
    batch = {"x": torch.zeros(4000, 1, 8, 8), "cond": torch.zeros(4000, dtype=torch.long)}
    seen = []

    def spy(x, sigma, cond=None):
        seen.append(cond)
        return x

    model.backbone.forward = lambda x_in, c_noise, cond=None: spy(x_in, c_noise, cond)
    images.label_dropout_loss(model, batch, torch.Generator().manual_seed(1), weighting=lambda s: torch.ones_like(s),
                              dropout=0.25, null_class=10)
    dropped = (seen[0] == 10).double().mean().item()
    assert abs(dropped - 0.25) < 5 * (0.25 * 0.75 / 4000) ** 0.5
    images.label_dropout_loss(model, batch, torch.Generator().manual_seed(1), weighting=lambda s: torch.ones_like(s),
                              dropout=0.25, null_class=10)
    assert torch.equal(seen[0], seen[1])


def test_superres_end_to_end(tmp_path):
    """2x super-resolution on the 8x8 digits (4x4 inputs), so it runs in seconds."""
    out = tmp_path / "sr"
    result = run("train", "superres", "--dataset", "digits", "--steps", 4, "--out", out, *TINY)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    for key in ("psnr_db", "bilinear_psnr_db", "low_res_mse", "frechet", "bilinear_frechet", "classifier_accuracy"):
        assert np.isfinite(report[key]), key
    model = from_pretrained(out).model
    assert model.backbone.config.cond_channels == 1 and model.backbone.config.num_classes == 0
    drawn = images.sample(out, num=5, steps=2, seed=3)
    assert drawn["samples"].shape == (5, 1, 8, 8) and drawn["low_res"].shape == (5, 1, 4, 4)
    test = load_image_dataset("digits").test
    picked = [int(np.argmin([(t - r).abs().sum() for t in test["x"]])) for r in drawn["reference"]]
    assert torch.equal(test["label"][picked], drawn["labels"])  # the references are real test images
    assert torch.allclose(images.downsample(drawn["reference"], 2), drawn["low_res"], atol=1e-6)
    result = run("sample", out, "--num", 3, "--label", 1, "--out", tmp_path / "x")
    assert_one_error_line(result, "not class-conditional")
    result = run("inpaint", out, "--num", 3, "--out", tmp_path / "x")
    assert_one_error_line(result, "needs a generative image run")


def test_nested_cond_batches_stay_aligned():
    x = torch.arange(20.0).reshape(20, 1)
    data = {"x": x, "cond": {"image": x * 10, "label": torch.arange(20)}}
    batch = next(ShuffledBatches(data, 8, seed=0))
    assert torch.equal(batch["cond"]["image"], batch["x"] * 10)
    assert torch.equal(batch["cond"]["label"].float(), batch["x"][:, 0])
    with pytest.raises(ValueError, match="one length"):
        ShuffledBatches({"x": x, "cond": {"image": x[:5]}}, 4)


@pytest.mark.parametrize("recipe", ["fashion_unet", "fashion_dit"])
def test_fashion_recipes_run_small(recipe, tmp_path):
    if not Path(FASHION_MNIST_DIR).is_dir():
        pytest.skip(f"Fashion-MNIST is not installed at {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")
    out = tmp_path / recipe
    result = run("train", recipe, "--steps", 2, "--device", "cpu", "--out", out, *TINY, "--set", "preset=tiny")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    assert report["dataset"] == "fashion" and report["num"] == 40 and report["guidance"] == 1.5
    kind = {"fashion_unet": "UNet2D", "fashion_dit": "DiT"}[recipe]
    assert type(from_pretrained(out).model.backbone).__name__ == kind


def _write_images(folder, count, size=12):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def test_folder_dataset_trains_and_says_it_has_no_classifier(tmp_path):
    _write_images(tmp_path / "imgs" / "a", 12)
    _write_images(tmp_path / "imgs" / "b", 12)
    out = tmp_path / "run"
    result = run("train", "digits", "--dataset", "folder", "--steps", 2, "--batch-size", 8, "--out", out,
                 "--set", f"data_root={tmp_path / 'imgs'}", "--set", "image_size=8", "--set", "num_eval=8",
                 "--set", "sample_steps=2", "--set", "threads=1", "--set", "sample_every=0")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    assert "no bundled classifier" in report["note"]
    with np.load(out / "samples.npz") as saved:
        assert saved["samples"].shape == (8, 3, 8, 8) and set(saved["labels"].tolist()) == {0, 1}


BAD = [
    (["train", "nosuch"], "unknown recipe 'nosuch'"),
    (["train", "digits", "--dataset", "folder", "--set", "data_root={empty}"], "no images in"),
    (["train", "digits", "--dataset", "folder"], "needs data_root"),
    (["train", "digits", "--dataset", "folder", "--set", "data_root={imgs}", "--set", "image_size=7"],
     "not divisible"),
    (["train", "digits", "--set", "preset=huge"], "unknown preset 'huge'"),
    (["train", "digits", "--set", "task=superres"], "set conditional=false"),
    (["train", "superres", "--set", "guidance=2"], "needs a class-conditional model"),
    (["train", "digits", "--batch-size", "5000", "--set", "steps=1"], "exceeds the 1438 training images"),
    (["train", "digits", "--device", "tpu"], "unknown device 'tpu'"),
    (["sample", "{run}", "--label", "10", "--out", "x"], "label must be in [0, 10)"),
    (["eval", "{run}", "--num", "5000"], "num must be in [2, 1438]"),
    (["sample", "{corrupt}", "--num", "2", "--out", "x"], "corrupt or truncated"),
    (["inpaint", "{run}", "--region", "diagonal", "--out", "x"], "unknown mask region 'diagonal'"),
    (["inpaint", "{run}", "--guidance", "2", "--out", "x"], "give --label too"),
    (["inpaint", "{run}", "--num", "400", "--out", "x"], "num must be in [1, 359]"),
    (["inpaint", "{run}", "--sampler", "nosuch", "--out", "x"], "nosuch"),
    (["sample", "{mismatched}", "--num", "2", "--out", "x"], "do not match the model"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_gives_one_error_line(args, message, digits_run, tmp_path):
    (tmp_path / "empty").mkdir()
    _write_images(tmp_path / "imgs", 4)
    corrupt, mismatched = tmp_path / "corrupt", tmp_path / "mismatched"
    for broken in (corrupt, mismatched):
        broken.mkdir()
        for name in ("config.json", "model.safetensors", "ema.safetensors"):
            (broken / name).write_bytes((digits_run / name).read_bytes())
    (corrupt / "ema.safetensors").write_bytes(b"\x00" * 100)
    record = json.loads((mismatched / "config.json").read_text())
    record["model"]["backbone"]["base_channels"] = 32  # weights of a 16-channel model
    (mismatched / "config.json").write_text(json.dumps(record))
    args = [a.format(run=digits_run, empty=tmp_path / "empty", imgs=tmp_path / "imgs", corrupt=corrupt,
                     mismatched=mismatched) for a in args]
    assert_one_error_line(run(*args), message)


def test_configs_share_fields_and_differ_in_defaults():
    digits, unet, dit = (make_config(get_recipe(n), {}) for n in ("digits", "fashion_unet", "fashion_dit"))
    assert (digits.dataset, unet.dataset, dit.dataset) == ("digits", "fashion", "fashion")
    assert (unet.backbone, dit.backbone, unet.preset) == ("unet", "dit", "base")
    assert make_config(get_recipe("digits"), {"steps": "7"}).steps == 7
