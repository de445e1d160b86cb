"""The per-feature normaliser of trajectory steps (Diffuser's LimitsNormalizer, or a Gaussian one)
and the ``[observation, action]`` rows it is fitted on."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

NORMALIZERS = ("limits", "gaussian")

@dataclass(frozen=True)
class Normalizer:
    """Per-feature affine map ``z = (x - shift) / scale``: ``limits`` sends each feature's
    data range to [-1, 1] (Diffuser's LimitsNormalizer), ``gaussian`` to zero mean and unit
    variance. A feature constant in the data keeps scale 1."""

    kind: str
    shift: tuple[float, ...]
    scale: tuple[float, ...]

    def __post_init__(self):
        if self.kind not in NORMALIZERS:
            raise ValueError(f"unknown normalizer {self.kind!r}; choose one of: {', '.join(NORMALIZERS)}")
        shift, scale = tuple(float(v) for v in self.shift), tuple(float(v) for v in self.scale)
        if len(shift) != len(scale) or not shift:
            raise ValueError(f"a normalizer needs as many shifts as scales (>= 1), got {len(shift)} and {len(scale)}")
        if not all(math.isfinite(v) for v in shift) or not all(math.isfinite(v) and v > 0 for v in scale):
            raise ValueError("a normalizer's shifts must be finite and its scales finite and positive")
        object.__setattr__(self, "shift", shift)
        object.__setattr__(self, "scale", scale)

    @classmethod
    def fit(cls, rows, kind: str = "limits") -> "Normalizer":
        """Statistics of ``rows (N, D)`` (every step of the data)."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or len(rows) == 0:
            raise ValueError(f"fit a normalizer on rows of shape (N, D) with N >= 1, got {rows.shape}")
        if not np.isfinite(rows).all():
            raise ValueError("the data has NaN or infinite values; drop or repair those steps before training")
        if kind == "limits":
            low, high = rows.min(0), rows.max(0)
            shift, scale = (high + low) / 2, (high - low) / 2
        elif kind == "gaussian":
            shift, scale = rows.mean(0), rows.std(0)
        else:
            raise ValueError(f"unknown normalizer {kind!r}; choose one of: {', '.join(NORMALIZERS)}")
        constant = scale <= 1e-6 * np.maximum(1.0, np.abs(shift))
        return cls(kind, tuple(shift), tuple(np.where(constant, 1.0, scale)))

    @property
    def dim(self) -> int:
        return len(self.shift)

    def _stats(self, x, dims):
        shift, scale = np.array(self.shift), np.array(self.scale)
        if dims is not None:
            shift, scale = shift[list(dims)], scale[list(dims)]
        if isinstance(x, torch.Tensor):
            return torch.as_tensor(shift, dtype=x.dtype, device=x.device), torch.as_tensor(scale, dtype=x.dtype,
                                                                                           device=x.device)
        return shift, scale

    def _check(self, x, dims) -> None:
        width = self.dim if dims is None else len(dims)
        if x.shape[-1] != width:
            raise ValueError(f"expected {width} features in the last axis, got shape {tuple(x.shape)}")

    def encode(self, x, dims=None):
        """Environment units -> model space, along the last axis (all features, or those in ``dims``)."""
        self._check(x, dims)
        shift, scale = self._stats(x, dims)
        return (x - shift) / scale

    def decode(self, z, dims=None):
        """Model space -> environment units."""
        self._check(z, dims)
        shift, scale = self._stats(z, dims)
        return z * scale + shift

    def to_dict(self) -> dict:
        return {"kind": self.kind, "shift": list(self.shift), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, data: dict) -> "Normalizer":
        return cls(data["kind"], tuple(data["shift"]), tuple(data["scale"]))


def step_rows(dataset: dict) -> np.ndarray:
    """``(N, S + A)`` float32 rows ``[observation, action]`` of a dataset (load_offline_dataset's fields)."""
    rows = np.concatenate([np.asarray(dataset["observations"], np.float32),
                           np.asarray(dataset["actions"], np.float32)], axis=1)
    if not np.isfinite(rows).all():
        row = int(np.argwhere(~np.isfinite(rows))[0][0])
        raise ValueError(f"the dataset has NaN or infinite observations or actions (first at step {row}); drop or "
                         f"repair those steps")
    return rows


__all__ = ["NORMALIZERS", "Normalizer", "step_rows"]
