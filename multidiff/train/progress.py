"""Progress bars (tqdm, on stderr) for training and for the samplers' callback."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from tqdm.auto import tqdm


def progress_bar(total: int, desc: str, enabled: bool = True, initial: int = 0) -> tqdm:
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True, initial=initial)


@contextmanager
def sampling_progress(total: int, desc: str = "sample", enabled: bool = True) -> Iterator[Callable[[dict], None]]:
    """A sampler ``callback`` that advances a bar of ``total`` steps (None when disabled)."""
    if not enabled:
        yield None
        return
    with progress_bar(total, desc) as bar:
        def callback(info: dict) -> None:
            bar.update(1)
            bar.set_postfix(sigma=f"{info['sigma']:.3g}", refresh=False)

        yield callback
