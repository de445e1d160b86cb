"""Where built datasets are cached: ``$MULTIDIFF_CACHE/<kind>`` (default ``~/.cache/multidiff/<kind>``)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("MULTIDIFF_CACHE") or Path.home() / ".cache" / "multidiff")


def cache_dir(kind: str) -> Path:
    """The cache folder of one kind of data (``"audio"``, ``"text"``...); not created here."""
    return cache_root() / kind
