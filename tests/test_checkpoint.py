"""Run folders: save -> load round trip, and clear errors for broken folders."""

import json

import pytest
import torch

from multidiff.backbones import MLP, MLPConfig
from multidiff.core.precond import make_precond
from multidiff.core.schedules import EDM, VPCosine
from multidiff.train import CheckpointError, from_pretrained, load_config, save_pretrained
from multidiff.train.checkpoint import CONFIG_NAME, FORMAT_VERSION, WEIGHT_FILES


def _model(seed: int, schedule=None, prediction="edm", **backbone):
    torch.manual_seed(seed)
    model = make_precond(prediction, MLP(MLPConfig(width=16, depth=2, **backbone)), schedule or EDM(sigma_data=1.0),
                         **({"sigma_data": 1.0} if prediction == "edm" else {}))
    with torch.no_grad():  # the output layer starts at zero; make every weight count
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture
def saved(tmp_path):
    model, ema = _model(0), _model(1)
    save_pretrained(model, {"recipe": "test", "note": [1, 2.5]}, tmp_path, ema=ema)
    return tmp_path, model, ema


@pytest.mark.parametrize("weights", ["model", "ema"])
def test_round_trip_is_bit_identical(saved, weights):
    directory, model, ema = saved
    original = {"model": model, "ema": ema}[weights]
    loaded, config = from_pretrained(directory, weights=weights)
    assert config == {"recipe": "test", "note": [1, 2.5]}
    assert type(loaded) is type(original) and loaded.schedule == original.schedule
    for (name, a), (_, b) in zip(original.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    x, sigma = torch.randn(8, 2), torch.rand(8) + 0.1
    assert torch.equal(original.eval()(x, sigma), loaded(x, sigma))


def test_round_trip_other_schedule_prediction_and_classes(tmp_path):
    model = _model(2, schedule=VPCosine(), prediction="eps", embedding="positional", num_classes=3)
    save_pretrained(model, {}, tmp_path)
    loaded, _ = from_pretrained(tmp_path, weights="model")
    assert loaded.prediction == "eps" and loaded.schedule.config() == model.schedule.config()
    x, labels = torch.randn(4, 2), torch.tensor([0, 1, 2, 3])
    assert torch.equal(model.eval()(x, torch.full((4,), 0.5), labels), loaded(x, torch.full((4,), 0.5), labels))


def test_writes_are_atomic_and_files_are_as_documented(saved):
    directory, _, _ = saved
    assert sorted(p.name for p in directory.iterdir()) == sorted([CONFIG_NAME, *WEIGHT_FILES.values()])
    record = json.loads((directory / CONFIG_NAME).read_text())
    assert record["format_version"] == FORMAT_VERSION and record["weights"] == ["ema", "model"]


def test_saving_without_ema_removes_a_stale_one(saved):
    directory, model, _ = saved
    save_pretrained(model, {}, directory)
    assert not (directory / WEIGHT_FILES["ema"]).exists()
    with pytest.raises(CheckpointError, match="weights='model'"):
        from_pretrained(directory)


def test_missing_folder_and_missing_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="config.json.*is missing.*multidiff train"):
        from_pretrained(tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "pickle"])
def test_corrupt_weights_raise_a_clear_error(saved, damage):
    directory, model, _ = saved
    path = directory / WEIGHT_FILES["ema"]
    if damage == "garbage":
        path.write_bytes(b"\x00not a safetensors file" * 10)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    else:  # a pickled state dict under the right name: must be refused, never unpickled
        torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="ema.safetensors.*corrupt"):
        from_pretrained(directory)


def test_missing_weights_file(saved):
    directory, _, _ = saved
    (directory / WEIGHT_FILES["ema"]).unlink()
    with pytest.raises(FileNotFoundError, match="ema.safetensors.*missing"):
        from_pretrained(directory)


def _edit_config(directory, edit):
    path = directory / CONFIG_NAME
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


def test_config_that_does_not_match_the_weights(saved):
    directory, _, _ = saved
    _edit_config(directory, lambda r: r["model"]["backbone"].update(width=32))
    with pytest.raises(CheckpointError, match="do not match the model in config.json.*shape"):
        from_pretrained(directory)
    _edit_config(directory, lambda r: r["model"]["backbone"].update(width=16, depth=3))
    with pytest.raises(CheckpointError, match="missing.*blocks.2"):
        from_pretrained(directory)


@pytest.mark.parametrize("edit, match", [
    (lambda r: r.update(format_version=99), "format_version 99"),
    (lambda r: r.pop("format_version"), "no format_version"),
    (lambda r: r.pop("weights"), "lacks the 'weights'"),
    (lambda r: r["model"].pop("schedule"), "model section"),
    (lambda r: r["model"]["backbone"].update(name="unet9"), "unknown backbone 'unet9'"),
])
def test_bad_config_entries(saved, edit, match):
    directory, _, _ = saved
    _edit_config(directory, edit)
    with pytest.raises(ValueError, match=match):
        from_pretrained(directory)


def test_config_that_is_not_json(saved):
    directory, _, _ = saved
    (directory / CONFIG_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_config(directory)


def test_unserialisable_config_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        save_pretrained(_model(0), {"bad": object()}, tmp_path / "run")
    assert not (tmp_path / "run").exists()
