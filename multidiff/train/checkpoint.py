"""Run folders: ``save_pretrained`` / ``from_pretrained``.

A folder holds

====================  ========================================================
``config.json``       ``format_version``, the ``model`` (backbone config,
                      schedule config, prediction type) and the caller's
                      ``config`` (e.g. a recipe's frozen dataclass), and the
                      ``weights`` files present
``model.safetensors`` the trained weights
``ema.safetensors``   their exponential moving average (when given)
====================  ========================================================

Every file is written to a temporary name and moved into place, so a crash
never leaves half a file; ``config.json`` is written last, so a folder with a
config has all its weights. Loading reads JSON and safetensors only: nothing
is unpickled.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from ..backbones import backbone_from_config, backbone_to_config
from ..core.precond import Precond, make_precond
from ..core.schedules import check_sigmas, schedule_from_config
from ..atomic import atomic_write_bytes, atomic_write_json

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHT_FILES = {"model": "model.safetensors", "ema": "ema.safetensors"}
GRIDS_NAME = "grids.json"  # sigma grids calibrated on the run's own model (``multidiff calibrate``)


class CheckpointError(ValueError):
    """A run folder that exists but cannot be loaded: corrupt, mismatched or from another format."""


# ---------------------------------------------------------------- model <-> JSON


def model_to_config(model: Precond) -> dict:
    """What rebuilds ``model`` (a preconditioned backbone) without its weights."""
    if not isinstance(model, Precond):
        raise TypeError(f"expected a Precond (see multidiff.core.precond.make_precond), got {type(model).__name__}")
    return {"backbone": backbone_to_config(model.backbone), "schedule": model.schedule.config(),
            "prediction": model.prediction, "precond": model.options()}


def model_from_config(config: dict) -> Precond:
    """Rebuild the (untrained) model from :func:`model_to_config` output."""
    try:
        backbone = backbone_from_config(config["backbone"])
        schedule = schedule_from_config(config["schedule"])
        return make_precond(config["prediction"], backbone, schedule, **config.get("precond", {}))
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"the model section of the config is incomplete or malformed ({err!r})") from None


def _to_jsonable(config) -> dict:
    if is_dataclass(config) and not isinstance(config, type):
        config = asdict(config)
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dataclass instance or a dict, got {type(config).__name__}")
    try:
        return json.loads(json.dumps(config))
    except (TypeError, ValueError) as err:
        raise ValueError(f"config is not JSON-serialisable: {err}") from None


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu").contiguous() for name, tensor in module.state_dict().items()}


# ---------------------------------------------------------------- save / load


def save_pretrained(model: Precond, config, directory: str | os.PathLike, *, ema: nn.Module | None = None) -> Path:
    """Write ``model`` (and its ``ema`` copy, same architecture) with ``config``
    (a dataclass or a JSON-able dict) into ``directory``; returns the folder."""
    directory = Path(directory)
    record = {"format_version": FORMAT_VERSION, "model": model_to_config(model), "config": _to_jsonable(config),
              "weights": sorted(["model"] + (["ema"] if ema is not None else []))}
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(directory / WEIGHT_FILES["model"], safetensors_bytes(_state(model)))
    if ema is not None:
        atomic_write_bytes(directory / WEIGHT_FILES["ema"], safetensors_bytes(_state(ema)))
    else:
        (directory / WEIGHT_FILES["ema"]).unlink(missing_ok=True)  # a stale EMA must not outlive its run
    atomic_write_json(directory / CONFIG_NAME, record)
    return directory


def load_config(directory: str | os.PathLike) -> dict:
    """Read and check ``config.json`` of a run folder (no weights are read)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"run folder {str(directory)!r} does not exist; pass a folder written by training "
                                f"(e.g. `multidiff train toy2d --out DIR`)")
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} is missing, so {str(directory)!r} is not a saved run; pass a folder "
                                f"written by save_pretrained / `multidiff train`")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{str(path)!r} is not valid JSON ({err}); the folder is corrupt, re-train or restore "
                              f"it") from None
    if not isinstance(record, dict) or "format_version" not in record:
        raise CheckpointError(f"{str(path)!r} has no format_version; it was not written by multidiff's "
                              f"save_pretrained")
    if record["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{str(path)!r} has format_version {record['format_version']!r}, this multidiff reads "
                              f"{FORMAT_VERSION}; load it with the multidiff version that wrote it")
    for key in ("model", "config", "weights"):
        if key not in record:
            raise CheckpointError(f"{str(path)!r} lacks the {key!r} entry; the file is damaged, re-save the run")
    return record


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} is missing although config.json lists it; copy the whole run "
                                f"folder, or re-train")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file ({err}); it is corrupt or "
                              f"truncated, re-train or restore it") from None


def _check_matches(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = {name: (tuple(t.shape), t.dtype) for name, t in model.state_dict().items()}
    found = {name: (tuple(t.shape), t.dtype) for name, t in state.items()}
    problems = []
    if missing := sorted(set(expected) - set(found)):
        problems.append(f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    if unexpected := sorted(set(found) - set(expected)):
        problems.append(f"unexpected {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
    differ = [f"{name} {found[name]} vs config {expected[name]}" for name in sorted(set(expected) & set(found))
              if found[name] != expected[name]]
    if differ:
        problems.append(f"shape/dtype differ: {differ[0]}{' ...' if len(differ) > 1 else ''}")
    if problems:
        raise CheckpointError(f"weights in {str(path)!r} do not match the model in config.json ({'; '.join(problems)})"
                              f"; the folder mixes files from different runs, re-save it with save_pretrained")


class Pretrained(NamedTuple):
    model: Precond  # in eval mode
    config: dict  # the ``config`` passed to save_pretrained, as JSON


def from_pretrained(directory: str | os.PathLike, *, weights: str = "ema", device=None) -> Pretrained:
    """Load a run folder written by :func:`save_pretrained`; ``weights`` is ``"ema"`` or ``"model"``."""
    if weights not in WEIGHT_FILES:
        raise ValueError(f"weights must be one of {sorted(WEIGHT_FILES)}, got {weights!r}")
    record = load_config(directory)
    if weights not in record["weights"]:
        raise CheckpointError(f"{str(directory)!r} has no {weights!r} weights (it has {record['weights']}); "
                              f"load with weights={record['weights'][0]!r}")
    model = model_from_config(record["model"])
    path = Path(directory) / WEIGHT_FILES[weights]
    state = _load_weights(path)
    _check_matches(model, state, path)
    model.load_state_dict(state)
    model.schedule.grids = load_grids(directory)
    return Pretrained(model.to(device).eval().requires_grad_(False), record["config"])


def load_grids(directory: str | os.PathLike) -> dict[tuple[str, int], torch.Tensor]:
    """The calibrated grids of a run folder, ``{(method, steps): sigmas}`` (empty without ``grids.json``).
    ``default_sigmas`` returns one of these in place of the spacing rule when it matches."""
    path = Path(directory) / GRIDS_NAME
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text())
        grids = {}
        for method, by_steps in record["grids"].items():
            for steps, sigmas in by_steps.items():
                grid = torch.tensor(sigmas, dtype=torch.float64)
                check_sigmas(grid)
                if len(grid) != int(steps) + 1:
                    raise ValueError(f"{method} {steps} steps: {len(grid)} sigmas")
                grids[(method, int(steps))] = grid
        return grids
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{str(path)!r} is not a grids file written by multidiff calibrate ({e}); "
                              f"delete it to sample on the default grids") from e


def save_grid(directory: str | os.PathLike, method: str, steps: int, sigmas: torch.Tensor, info: dict) -> Path:
    """Add (or replace) one calibrated grid in the run folder's ``grids.json``, atomically."""
    path = Path(directory) / GRIDS_NAME
    record = json.loads(path.read_text()) if path.exists() else {"format_version": FORMAT_VERSION, "grids": {},
                                                                  "info": {}}
    record["grids"].setdefault(method, {})[str(steps)] = [float(v) for v in sigmas.tolist()]
    record["info"].setdefault(method, {})[str(steps)] = info
    return atomic_write_json(path, record)
