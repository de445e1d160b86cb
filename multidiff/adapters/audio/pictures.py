"""Pictures of spectrograms."""

from __future__ import annotations

import math
import os
from pathlib import Path

from torch import Tensor

from ...atomic import atomic_write
from .spectrogram import SpectrogramConfig


def save_spectrograms(x: Tensor, path: str | os.PathLike, *, ncol: int = 10, titles: list[str] | None = None,
                      spec: SpectrogramConfig | None = None) -> Path:
    """A PNG grid of model-space spectrograms ``(B, 1, F, T)`` (low frequencies at the bottom),
    written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = x.detach().float().cpu()
    count = len(x)
    ncol = max(1, min(ncol, count))
    nrow = math.ceil(count / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.6 * ncol, 1.1 * nrow + 0.2 * (titles is not None)),
                             squeeze=False)
    extent = None
    if spec is not None:
        extent = (0, spec.clip_seconds, 0, spec.bins)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < count:
            ax.imshow(x[i, 0].numpy(), origin="lower", aspect="auto", cmap="magma", vmin=-1, vmax=1, extent=extent)
            if titles is not None:
                ax.set_title(titles[i], fontsize=7)
    fig.tight_layout(pad=0.2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=100)

    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)
