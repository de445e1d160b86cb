"""Random number generator states of one process, as tensors and JSON (no pickle).

A training process draws from torch's global CPU generator (dropout, user
code), the CUDA generator of its device, Python's ``random`` and numpy's
global generator (user code), and the engine's own generator of sigmas and
noise. A checkpoint keeps all of them per rank, so a resumed run draws the
same numbers as an uninterrupted one."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def derived_seed(seed: int, rank: int, stream: str) -> int:
    """A 63-bit seed for generator ``stream`` of process ``rank``, distinct for distinct
    (seed, rank, stream) and independent of the other streams' draws."""
    digest = hashlib.sha256(f"multidiff/{seed}/{rank}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def noise_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s sigma/noise generator: rank 0 keeps ``seed`` itself,
    so a one-process run draws what the generator ``manual_seed(seed)`` draws."""
    return seed if rank == 0 else derived_seed(seed, rank, "noise")


def capture(noise: torch.Generator) -> dict:
    """Every RNG state of this process, plus the engine's ``noise`` generator."""
    python_version, python_state, python_gauss = random.getstate()
    name, numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = np.random.get_state()
    state = {
        "torch_cpu": torch.get_rng_state(),
        "noise": noise.get_state(),
        "python": {"version": python_version, "state": torch.tensor(python_state, dtype=torch.int64),
                   "gauss_next": python_gauss},
        "numpy": {"name": name, "keys": torch.from_numpy(numpy_keys.astype(np.int64)), "pos": int(numpy_pos),
                  "has_gauss": int(numpy_has_gauss), "cached_gaussian": float(numpy_gauss)},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = torch.cuda.get_rng_state()  # the current device's
    return state


def restore(state: dict, noise: torch.Generator) -> None:
    """Put back the states :func:`capture` returned."""
    torch.set_rng_state(state["torch_cpu"])
    noise.set_state(state["noise"])
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss_next"]))
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["torch_cuda"])


def reseed(seed: int, rank: int, noise: torch.Generator) -> None:
    """Fresh, rank-dependent states for a new run (or a resume on a different number of processes)."""
    torch.manual_seed(derived_seed(seed, rank, "torch"))
    noise.manual_seed(noise_seed(seed, rank))
    random.seed(derived_seed(seed, rank, "python"))
    np.random.seed(derived_seed(seed, rank, "numpy") % 2**32)
