"""Metrics of a training run: JSON lines (one record per ``log_every`` steps) and,
when ``torch.utils.tensorboard`` and tensorboard are importable, TensorBoard scalars."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from ..atomic import atomic_write_bytes


def _tensorboard_writer(directory: Path, resume_step: int | None):
    """A SummaryWriter, or None without tensorboard. A fresh run deletes the folder's old event
    files; a resumed one tells TensorBoard to hide what was logged after ``resume_step`` (it is
    logged again), as the JSON lines do."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    if resume_step is None and directory.is_dir():
        for old in directory.glob("events.out.tfevents.*"):
            old.unlink()
    return SummaryWriter(str(directory), purge_step=None if resume_step is None else resume_step + 1)


class MetricsLog:
    """Appends records to ``path`` (JSON lines). A fresh run truncates the file; a
    resumed one keeps the records up to the step it resumes from (later ones were
    logged after the checkpoint and will be logged again)."""

    def __init__(self, path: str | os.PathLike | None, *, resume_step: int | None = None,
                 tensorboard_dir: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else None
        self.history: list[dict] = []
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            kept = self._records_up_to(resume_step) if resume_step is not None else []
            atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
            self._file = open(self.path, "a")
        self._tensorboard = (_tensorboard_writer(Path(tensorboard_dir), resume_step) if tensorboard_dir is not None
                             else None)

    def _records_up_to(self, step: int) -> list[dict]:
        if not self.path.is_file():
            return []
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by the crash
                warnings.warn(f"dropped an unreadable line of {self.path}", stacklevel=3)
                continue
            if record.get("step", 0) <= step:
                kept.append(record)
        return kept

    def write(self, record: dict) -> None:
        self.history.append(record)
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        if self._tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tensorboard.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
