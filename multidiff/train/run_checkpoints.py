"""Training checkpoints in a run folder: the full state for an exact resume.

::

    RUN/checkpoints/step-00000200/state.safetensors   every tensor (weights, EMA, AdamW moments, RNG states)
    RUN/checkpoints/step-00000200/state.json          everything else, with the tensors' names, size and sha256

A checkpoint is written into a hidden temporary folder, every file fsync'ed,
then renamed to ``step-N`` in one ``os.replace``: a crash at any moment leaves
either the complete folder or none (a stray ``.tmp-*`` folder, removed on the
next start). Only folders named ``step-N`` count, the newest ``keep_last`` are
kept. Reading checks the JSON, the size and sha256 of the tensor file and
parses it with safetensors; nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import fsync_dir, fsync_file
from .checkpoint import CheckpointError
from .tree import flatten, unflatten

FORMAT, FORMAT_VERSION = "multidiff-train-checkpoint", 1
FOLDER, STATE_JSON, STATE_TENSORS = "checkpoints", "state.json", "state.safetensors"
_NAME = re.compile(r"^step-(\d+)$")


def checkpoints_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / FOLDER


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every checkpoint, oldest first (complete by construction, not yet verified)."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in root.iterdir() if (match := _NAME.match(path.name))]
    return sorted(found)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _remove(path: Path) -> None:
    """Delete a folder so that it never looks like a (damaged) checkpoint half-way: rename, then delete."""
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}-{time.monotonic_ns()}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def write_checkpoint(run_dir: str | os.PathLike, step: int, state: dict, keep_last: int) -> Path:
    """Write ``state`` (a tree of tensors and JSON values) as checkpoint ``step``; prune to ``keep_last``."""
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    json_tree, tensors = flatten(state)
    save_file(tensors, tmp / STATE_TENSORS)
    fsync_file(tmp / STATE_TENSORS)
    record = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": step,
              "tensors": {"file": STATE_TENSORS, "bytes": (tmp / STATE_TENSORS).stat().st_size,
                          "sha256": _sha256(tmp / STATE_TENSORS)},
              "state": json_tree}
    (tmp / STATE_JSON).write_text(json.dumps(record, indent=1) + "\n")
    fsync_file(tmp / STATE_JSON)
    fsync_dir(tmp)
    if final.exists():  # e.g. a damaged checkpoint of this step that a resumed run fell back from
        _remove(final)
    os.replace(tmp, final)
    fsync_dir(root)
    for _, old in list_checkpoints(run_dir)[:-keep_last]:
        _remove(old)
    return final


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The state saved in checkpoint folder ``path``; a damaged one raises :class:`CheckpointError`."""
    path = Path(path)
    fix = "delete this folder to resume from the checkpoint before it, or start a new run folder"

    def damaged(problem: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {str(path)!r} is damaged: {problem}; {fix}")

    try:
        record = json.loads((path / STATE_JSON).read_text())
    except FileNotFoundError:
        raise damaged(f"{STATE_JSON} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise damaged(f"{STATE_JSON} is not valid JSON ({err})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise damaged(f"{STATE_JSON} is not a multidiff training checkpoint")
    if record.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {str(path)!r} has format_version {record.get('format_version')!r}, this "
                              f"multidiff reads {FORMAT_VERSION}; resume it with the multidiff version that wrote it")
    info = record.get("tensors")
    if not isinstance(info, dict) or not {"file", "bytes", "sha256"} <= set(info) or "state" not in record:
        raise damaged(f"{STATE_JSON} lacks the tensor file's record or the state")
    tensors_path = path / str(info["file"])
    if not tensors_path.is_file():
        raise damaged(f"{tensors_path.name} is missing")
    size = tensors_path.stat().st_size
    if size != info["bytes"]:
        raise damaged(f"{tensors_path.name} has {size} bytes, {info['bytes']} were written (truncated?)")
    if _sha256(tensors_path) != info["sha256"]:
        raise damaged(f"the sha256 of {tensors_path.name} differs from the one written")
    try:
        tensors = load_file(tensors_path)
        state = unflatten(record["state"], tensors)
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        raise damaged(f"{tensors_path.name} cannot be read ({err})") from None
    if not isinstance(state, dict) or state.get("step") != record.get("step"):
        raise damaged("the step in the state differs from the folder's record")
    return state


def latest_checkpoint(run_dir: str | os.PathLike) -> tuple[Path, dict, list[tuple[Path, str]]] | None:
    """The newest checkpoint that reads back: ``(folder, state, skipped)``, where ``skipped``
    lists the newer, damaged ones with the reason; ``None`` when there is no checkpoint.
    Raises :class:`CheckpointError` when checkpoints exist but none reads back."""
    skipped: list[tuple[Path, str]] = []
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            return path, read_checkpoint(path), skipped
        except CheckpointError as err:
            skipped.append((path, str(err)))
    if skipped:
        raise CheckpointError(f"no checkpoint in {str(checkpoints_dir(run_dir))!r} can be read "
                              f"({'; '.join(reason for _, reason in skipped)}); the run cannot be resumed; start it "
                              f"over in a new run folder, or delete {str(checkpoints_dir(run_dir))!r}")
    return None


def quarantine(path: Path) -> Path:
    """Rename a damaged checkpoint out of the ``step-N`` namespace (kept for inspection)."""
    target = path.with_name(f"damaged-{path.name}")
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    os.replace(path, target)
    return target


def remove_stale_temporaries(run_dir: str | os.PathLike) -> None:
    """Delete the ``.tmp-*`` / ``.trash-*`` folders a killed run left behind."""
    root = checkpoints_dir(run_dir)
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith((".tmp-", ".trash-")):
                shutil.rmtree(path, ignore_errors=True)


def remove_checkpoints(run_dir: str | os.PathLike) -> None:
    """Delete all checkpoints of a run folder (to start the run over)."""
    root = checkpoints_dir(run_dir)
    if root.is_dir():
        _remove(root)
