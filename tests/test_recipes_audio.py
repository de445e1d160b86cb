"""Audio recipes end to end on tiny settings: train, sample (WAV + npz + png), inpaint, eval,
through the Python API and the CLI. A folder of generated tones stands in for the data so
the tests run anywhere; one test trains spoken_digits itself where espeak-ng/flite exist."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from multidiff.cli import main
from multidiff.recipes import RECIPES, get_recipe, make_config
from multidiff.recipes import audio as R
from multidiff.recipes.audio.sampling import run_spectrogram

soundfile = pytest.importorskip("soundfile")
pytest.importorskip("torchaudio")

TINY = dict(steps=3, batch_size=4, preset="tiny", sample_steps=3, num_eval=4, checkpoint_every=0, sample_every=0,
            sample_rate=8000, n_fft=256, hop_length=64, n_mels=16, frames=16, griffin_lim_iters=4, threads=1)
BINS = 16  # mel bands (the default scale)


@pytest.fixture(scope="module")
def tone_folder(tmp_path_factory):
    """Two classes of tones (low, high), 12 files each, at 16 kHz (resampled to the run's 8 kHz)."""
    root = tmp_path_factory.mktemp("tones")
    rate = 16000
    for label, (name, base) in enumerate((("high", 900.0), ("low", 220.0))):
        (root / name).mkdir()
        for i in range(12):
            t = np.arange(rate // 4) / rate
            wave = 0.5 * np.sin(2 * np.pi * base * (1 + 0.02 * i) * t) * np.exp(-3 * t)
            soundfile.write(str(root / name / f"{i:02d}.wav"), wave.astype(np.float32), rate, subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def tone_run(tone_folder, tmp_path_factory):
    config = make_config(get_recipe("spoken_digits"), {**TINY, "dataset": "folder", "data_root": str(tone_folder),
                                                       "mask_aware": True})
    return R.train(config, tmp_path_factory.mktemp("runs") / "tones")


def test_audio_recipes_are_registered():
    for name in ("spoken_digits", "spoken_digits_16k", "spoken_digits_8k", "notes", "spoken_digits_gpu", "notes_gpu"):
        assert RECIPES[name].inpaint is not None and RECIPES[name].config_class.recipe == name
    default = R.SpokenDigitsConfig()  # 16 kHz since #28
    assert default.sample_rate == 16000 and default.spectrogram.bins == 96 and default.mask_aware
    assert default.spectrogram.mel_inverse == "nnls" and default.sampler == "euler_ancestral"
    same = {k: v for k, v in vars(R.SpokenDigits16kConfig()).items()}
    assert same == {k: v for k, v in vars(default).items()}
    eight = R.SpokenDigits8kConfig()
    assert not eight.mask_aware and eight.spectrogram.bins == 32 and eight.sample_rate == 8000


def test_a_masked_example_drops_its_label_at_the_context_rate():
    """masked_loss drops the labels of clips with known frames at ``context_dropout`` and of the
    others at ``dropout``; with the two equal it draws exactly what drop_labels would."""
    from multidiff.recipes.common import drop_labels

    config = make_config(get_recipe("spoken_digits"), {**TINY, "mask_rate": 0.5})
    seen = {}
    probe = R.build_model(config, 3)

    def raw(x, sigma, cond):  # records the cond the loss hands the denoiser, runs no network
        seen.update(cond)
        ones = torch.ones(x.shape[0], 1, 1, 1)
        return torch.zeros_like(x), ones, ones

    probe.raw = raw
    batch = {"x": torch.zeros(4000, 1, BINS, 16), "cond": torch.zeros(4000, dtype=torch.long)}
    R.masked_loss(probe, batch, torch.Generator().manual_seed(0), weighting=lambda s: torch.ones_like(s),
                  dropout=0.1, null_class=3, config=config, context_dropout=0.6)
    known = seen["image"][:, 1].flatten(1).amax(1) > 0  # the mask channel
    dropped = seen["label"] == 3
    assert 0.4 < float(known.float().mean()) < 0.6
    assert abs(float(dropped[known].float().mean()) - 0.6) < 0.04
    assert abs(float(dropped[~known].float().mean()) - 0.1) < 0.03
    R.masked_loss(probe, batch, torch.Generator().manual_seed(0), weighting=lambda s: torch.ones_like(s),
                  dropout=0.1, null_class=3, config=config)
    expected = drop_labels(batch["cond"], torch.Generator().manual_seed(0), 0.1, 3)
    assert torch.equal(seen["label"], expected)


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_known_loss_weight_weighs_the_known_frames_of_a_masked_example(weight):
    config = make_config(get_recipe("spoken_digits"), {**TINY, "mask_rate": 0.5, "known_loss_weight": weight})
    probe = R.build_model(config, 3)

    def raw(x, sigma, cond):  # x0 = 0, so the target is -x: exact on the frames to fill, off by 2 on known ones
        known = cond["image"][:, 1:2]  # (B, 1, bins, T): the mask channel
        ones = torch.ones(x.shape[0], 1, 1, 1)
        return -x + 2.0 * known, ones, ones

    probe.raw = raw
    batch = {"x": torch.zeros(400, 1, BINS, 16), "cond": torch.zeros(400, dtype=torch.long)}
    loss = R.masked_loss(probe, batch, torch.Generator().manual_seed(0), weighting=lambda s: torch.ones_like(s),
                         dropout=0.1, null_class=3, config=config)
    from multidiff.adapters.audio import random_masks

    generator = torch.Generator().manual_seed(0)  # the same masks, drawn again after the label uniforms
    torch.rand(400, generator=generator)
    known = random_masks(400, config.spectrogram, generator=generator, empty=0.5,
                  gap_seconds=(config.gap_min_seconds, config.gap_max_seconds)).flatten(1).mean(1)  # share known
    expected = 4.0 * weight * known / (weight * known + 1 - known)  # the known frames' share of the mean
    torch.testing.assert_close(loss, expected.float())
    assert (loss[known == 0] == 0).all() and (loss[known > 0] > 0).all() == (weight > 0)
    with pytest.raises(ValueError, match="known_loss_weight"):
        make_config(get_recipe("spoken_digits"), {"known_loss_weight": "2"})


def test_the_context_fill_and_the_top_width_reach_the_denoiser():
    """context_fill="line": a mask-aware run's context holds the straight line across the hidden frames;
    top_width widens the U-Net's first level (and its output) to that many channels."""
    from multidiff.adapters.audio import interpolate_frames, task_mask

    config = make_config(get_recipe("spoken_digits"), {**TINY, "context_fill": "line", "top_width": 24})
    known = torch.rand(3, 1, BINS, 16) * 2 - 1
    mask = task_mask(3, config.spectrogram, "gap")
    cond = R.conditioning(config, torch.tensor([0, 1, 2]), known, mask)
    assert torch.equal(cond["image"][:, 0:1], interpolate_frames(known, mask))
    zero = R.conditioning(replace(config, context_fill="zero"), None, known, mask)
    assert torch.equal(zero["image"][:, 0:1], known * mask) and "label" not in zero
    model = R.build_model(config, 3)
    assert model.backbone.conv_out.in_channels == 24 and model.backbone.conv_in.out_channels == 24
    assert R.build_model(replace(config, top_width=0), 3).backbone.conv_out.in_channels == 16  # tiny's own
    out = model(known, torch.full((3,), 0.5), cond)
    assert out.shape == known.shape
    with pytest.raises(ValueError, match="context_fill"):
        make_config(get_recipe("spoken_digits"), {"context_fill": "blur"})
    with pytest.raises(ValueError, match="top_width is a setting of the unet1d backbone"):
        make_config(get_recipe("spoken_digits"), {"backbone": "unet2d", "top_width": "96"})


def test_the_run_carries_its_spectrogram(tone_run):
    config = R.read_config(tone_run)
    assert config.spectrogram.bins == BINS and config.spectrogram.frames == 16 and config.sample_rate == 8000
    assert config.scale == "mel" and config.mask_aware
    report = json.loads((tone_run / "eval.json").read_text())
    assert "no bundled classifier" in report["note"] and report["network_seconds_per_audio_second"] > 0
    drawn = R.sample(tone_run, num=3, label=1, seed=2)
    assert drawn["spectrograms"].shape == (3, 1, BINS, 16)
    assert drawn["samples"].shape == (3, 64 * 15) and drawn["samples"].abs().max() <= 1
    assert drawn["labels"].tolist() == [1, 1, 1] and drawn["class_names"] == ["high", "low"]
    again = R.sample(tone_run, num=3, label=1, seed=2)
    assert torch.equal(drawn["samples"], again["samples"])


def test_cli_sample_writes_wav_npz_and_png(tone_run, tmp_path):
    runner = CliRunner()
    stem = tmp_path / "out" / "clips"
    result = runner.invoke(main, ["sample", str(tone_run), "--num", "4", "--label", "0", "--guidance", "1.5",
                                  "--out", str(stem)])
    assert result.exit_code == 0, result.output
    with np.load(stem.with_suffix(".npz")) as arrays:
        assert arrays["samples"].dtype == np.float32 and arrays["samples"].shape == (4, 64 * 15)
        assert np.abs(arrays["samples"]).max() <= 1 and int(arrays["sample_rate"]) == 8000
        assert arrays["labels"].tolist() == [0] * 4
    assert stem.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    wavs = sorted(stem.glob("*.wav"))
    assert [w.name for w in wavs] == [f"{i:04d}-high.wav" for i in range(4)]
    data, rate = soundfile.read(str(wavs[0]))
    assert rate == 8000 and data.shape == (64 * 15,)


@pytest.mark.parametrize("region", ["continue", "gap"])
def test_cli_inpaint_keeps_the_known_frames(tone_run, tmp_path, region):
    stem = tmp_path / region
    result = CliRunner().invoke(main, ["inpaint", str(tone_run), "--num", "2", "--region", region, "--sampler",
                                       "dpmpp_2m", "--out", str(stem)])
    assert result.exit_code == 0, result.output
    with np.load(stem.with_suffix(".npz")) as arrays:
        keep = np.broadcast_to(arrays["mask"], arrays["reference"].shape) > 0
        assert np.array_equal(arrays["spectrograms"][keep], arrays["reference"][keep])
        assert not np.array_equal(arrays["spectrograms"][~keep], arrays["reference"][~keep])
        assert arrays["samples"].shape == (2, 64 * 15)
    assert len(list(stem.glob("*.wav"))) == 2


def test_bad_requests_are_clear_errors(tone_run):
    runner = CliRunner()
    for args, message in ((["sample", str(tone_run), "--num", "2", "--label", "5", "--out", "x"], "label must be"),
                          (["inpaint", str(tone_run), "--region", "bottom", "--out", "x"], "continue, gap"),
                          (["eval", str(tone_run), "--num", "1000"], "num must be")):
        result = runner.invoke(main, args)
        assert result.exit_code != 0 and message in result.output, (args, result.output)
    with pytest.raises(ValueError, match="data_root"):
        make_config(get_recipe("spoken_digits"), {"dataset": "folder"})
    with pytest.raises(ValueError, match="hop_length"):
        make_config(get_recipe("spoken_digits"), {"hop_length": "4096"})


def test_resume_continues_the_audio_run_exactly(tone_folder, tmp_path):
    """A run that lost everything after its step-2 checkpoint, resumed, ends bit-identical."""
    from multidiff.train import from_pretrained

    settings = {**TINY, "dataset": "folder", "data_root": str(tone_folder), "steps": 4, "checkpoint_every": 2,
                "num_eval": 2, "label_dropout": 0.5}
    out = R.train(make_config(get_recipe("spoken_digits"), settings), tmp_path / "run")
    straight = from_pretrained(out, weights="model").model.state_dict()
    shutil.rmtree(out / "checkpoints" / "step-00000004")  # as if killed between step 2 and step 4
    for name in ("model.safetensors", "ema.safetensors", "config.json"):
        (out / name).unlink()
    R.train(make_config(get_recipe("spoken_digits"), {**settings, "resume": True}), out)
    again = from_pretrained(out, weights="model").model.state_dict()
    assert all(torch.equal(straight[k], again[k]) for k in straight)


def test_the_mask_aware_fill_reads_the_frames_around_the_gap(tone_run):
    seen = R.inpaint_test(tone_run, num=2, region="gap", seed=1)
    blind = R.inpaint_test(tone_run, num=2, region="gap", seed=1, context=False)
    keep = torch.broadcast_to(seen["mask"], seen["reference"].shape) > 0
    for filled in (seen, blind):
        assert torch.equal(filled["spectrograms"][keep], filled["reference"][keep])  # replacement: exact
    assert not torch.allclose(seen["spectrograms"][~keep], blind["spectrograms"][~keep])  # the context matters
    from multidiff.adapters.audio import gap_mask

    narrow = R.inpaint_test(tone_run, num=2, mask=gap_mask(1, R.read_config(tone_run).spectrogram, 0.05), seed=1)
    assert int((narrow["mask"][0, 0, 0] == 0).sum()) == 6  # 50 ms of 8 ms hops (rounded)
    with pytest.raises(ValueError, match="mask must have shape"):
        R.inpaint_test(tone_run, num=2, mask=torch.ones(1, 1, 1, 5))


def test_a_fill_can_be_guided_to_the_class_its_known_frames_sound_like(tone_run):
    """``infer_label``: the run's own diffusion classifier names each clip's class from its known frames
    (``infer_labels``, the same answer when asked directly), and the fill is guided toward it."""
    from multidiff.train import from_pretrained

    filled = R.inpaint_test(tone_run, num=2, region="gap", seed=2, infer_label=True)
    inferred = filled["inferred_labels"]
    assert inferred.shape == (2,) and set(inferred.tolist()) <= {0, 1}
    config = R.read_config(tone_run)
    model = from_pretrained(tone_run).model
    direct = R.infer_labels(model, config, 2, filled["reference"], filled["mask"],
                            generator=torch.Generator().manual_seed(2))
    assert torch.equal(direct, inferred)
    keep = torch.broadcast_to(filled["mask"], filled["reference"].shape) > 0
    assert torch.equal(filled["spectrograms"][keep], filled["reference"][keep])
    assert config.inpaint_infer_label  # spoken_digits' default: a fill without a label infers one
    assert torch.equal(R.inpaint_test(tone_run, num=2, region="gap", seed=2)["inferred_labels"], inferred)
    assert "inferred_labels" not in R.inpaint_test(tone_run, num=2, region="gap", seed=2, infer_label=False)
    assert "inferred_labels" not in R.inpaint_test(tone_run, num=2, region="gap", seed=2, label=1)
    with pytest.raises(ValueError, match="not both"):
        R.inpaint_test(tone_run, num=2, region="gap", label=0, infer_label=True)


def test_an_oracle_fill_is_guided_to_each_clip_s_own_class(tone_run):
    """``true_label``: each fill guided toward its clip's true class, as if told it one by one."""
    told = R.inpaint_test(tone_run, num=2, region="gap", seed=3, true_label=True)
    assert "inferred_labels" not in told
    for k in (0, 1):  # the same fills as asking for one class, clip by clip
        one = R.inpaint_test(tone_run, num=2, region="gap", seed=3, label=k)
        mine = told["labels"] == k
        assert mine.any()
        torch.testing.assert_close(told["spectrograms"][mine], one["spectrograms"][mine])
    with pytest.raises(ValueError, match="own class"):
        R.inpaint_test(tone_run, num=2, region="gap", label=0, true_label=True)


def test_inpainting_is_judged_beside_its_baselines(tone_run):
    report = R.evaluate_inpainting(tone_run, region="gap", num=2, seed=0)
    methods = report["methods"]
    assert set(methods) == {"model", "model, no label", "model, replacement only", "silence", "linear interpolation",
                            "original", "original_decoded"}
    assert report["start_sigma"] == R.read_config(tone_run).inpaint_start_sigma == 0  # spoken_digits': from noise
    assert 0 <= report["inferred_label_accuracy"] <= 1
    assert all(methods[m]["rms"] > 0 and methods[m]["lsd_db"] > 0 for m in ("model", "silence"))
    assert methods["original"]["accuracy"] is None  # the folder dataset has no bundled classifier
    assert report["rms_over_linear_interpolation"] == methods["model"]["rms"] / methods["linear interpolation"]["rms"]
    assert report["hidden_seconds"] == pytest.approx(6 * 64 / 8000)  # the middle of 16 frames less two fifths


def test_runs_saved_before_the_linear_scale_read_as_mel(tone_run, tmp_path):
    """A run saved before these fields existed: mel, inverted by plain least squares, no mask channels;
    a new run saves the NNLS inverse."""
    saved = json.loads((tone_run / "config.json").read_text())
    assert saved["config"]["mel_inverse"] == "nnls" and R.read_config(tone_run).spectrogram.mel_inverse == "nnls"
    assert saved["config"]["top_width"] == 96 and saved["config"]["context_fill"] == "line"
    saved["config"]["inpaint_start_sigma"] = 0.3
    for key in ("scale", "mask_aware", "mel_inverse", "inpaint_start_sigma", "top_width", "context_fill",
                "inpaint_infer_label"):
        saved["config"].pop(key)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = R.read_config(tmp_path)
    assert config.scale == "mel" and not config.mask_aware and config.spectrogram.mel_inverse == "lstsq"
    assert config.inpaint_start_sigma == 0  # older runs fill from pure noise
    assert config.top_width == 0 and config.context_fill == "zero" and not config.inpaint_infer_label
    assert run_spectrogram(tmp_path).mel_inverse == "lstsq"


def test_a_linear_run_without_mask_channels_trains_samples_and_inpaints(tone_folder, tmp_path):
    """Linear magnitudes and plain label dropout (as the notes recipe trains); inpainting by replacement."""
    settings = {**TINY, "dataset": "folder", "data_root": str(tone_folder), "scale": "linear", "mask_aware": False}
    run = R.train(make_config(get_recipe("spoken_digits"), settings), tmp_path / "linear")
    model, config = R.load_run(run)
    assert model.backbone.config.cond_channels == 0 and config.spectrogram.bins == 129
    assert R.sample(run, num=2, seed=0)["spectrograms"].shape == (2, 1, 129, 16)
    filled = R.inpaint_test(run, num=2, region="continue", seed=0)
    keep = torch.broadcast_to(filled["mask"], filled["reference"].shape) > 0
    assert torch.equal(filled["spectrograms"][keep], filled["reference"][keep])
    assert "model, replacement only" not in R.evaluate_inpainting(run, region="gap", num=2)["methods"]


@pytest.mark.requires("tts")
def test_spoken_digits_trains_and_is_judged_by_the_bundled_classifier(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIDIFF_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["train", "spoken_digits", "--steps", "2", "--batch-size", "8", "--out",
                                       str(tmp_path / "sd"), "--set", "clips_per_class=2", "--set", "num_eval=10", "--set",
                                       "sample_steps=2", "--set", "griffin_lim_iters=2", "--set", "threads=1",
                                       "--set", "checkpoint_every=0", "--set", "sample_every=0"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "sd" / "eval.json").read_text())
    assert 0 <= report["classifier_accuracy"] <= 1 and report["classifier_test_accuracy"] >= 0.95
    assert report["frechet_floor"] > 0 and report["frechet"] > 0
    assert len(list((tmp_path / "sd" / "samples").glob("*.wav"))) == 10


def test_a_fill_can_start_from_the_noised_straight_line(tone_run):
    """start_sigma > 0 starts from interpolate_frames noised to it: at a small sigma the fill stays
    near the line, from pure noise (0) it does not; the known frames are exact either way; a start
    at or above the run's largest sigma, or below 0, is refused."""
    from multidiff.adapters.audio import hidden_rms, interpolate_frames

    near = R.inpaint_test(tone_run, num=2, region="gap", seed=1, start_sigma=0.01)
    cold = R.inpaint_test(tone_run, num=2, region="gap", seed=1, start_sigma=0)
    line = interpolate_frames(near["reference"], near["mask"])
    keep = torch.broadcast_to(near["mask"], near["reference"].shape) > 0
    for filled in (near, cold):
        assert torch.equal(filled["spectrograms"][keep], filled["reference"][keep])
    off_line = [float(hidden_rms(f["spectrograms"], line, f["mask"]).mean()) for f in (near, cold)]
    assert off_line[0] < 0.05 < off_line[1], off_line
    with pytest.raises(ValueError, match="largest sigma"):
        R.inpaint_test(tone_run, num=2, region="gap", start_sigma=1e4)
    with pytest.raises(ValueError, match="start_sigma must be >= 0"):
        R.inpaint_test(tone_run, num=2, region="gap", start_sigma=-1)
    with pytest.raises(ValueError, match="inpaint_start_sigma"):
        make_config(get_recipe("spoken_digits"), {"inpaint_start_sigma": "-0.5"})
