"""Data-parallel set-up from ``torchrun``'s environment and the few collectives the engine needs.

``torchrun --nproc_per_node N script.py`` starts N copies of the script with
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``
set; :func:`init_distributed` joins them into one process group (NCCL on
CUDA, gloo on CPU). Without those variables everything here is a no-op for a
single process, so the same code runs either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, shows the progress bar, samples and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _default_device(local_rank: int) -> torch.device:
    return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")


def init_distributed(device: str | torch.device | None = None) -> DistInfo:
    """This process's place in the run; joins the process group on first call when
    ``WORLD_SIZE > 1`` (idempotent). ``device`` defaults to ``cuda:LOCAL_RANK`` when
    CUDA is available, else the CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(device) if device is not None else _default_device(local_rank)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    if world_size > 1 and not dist.is_initialized():
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise RuntimeError(f"WORLD_SIZE={world_size} but {name} is not set; start the processes with "
                                   f"torchrun (e.g. `torchrun --nproc_per_node {world_size} train.py`)")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=device)


def shutdown_distributed() -> None:
    """Leave the process group (call once at the end of a torchrun script)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def all_reduce(tensor: torch.Tensor, info: DistInfo, op: str = "sum") -> torch.Tensor:
    """``tensor`` reduced over the ranks (``op``: "sum", "min" or "max"), in place; unchanged for one process."""
    if info.distributed:
        dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op])
    return tensor


def all_gather_bytes(data: bytes, info: DistInfo) -> list[bytes]:
    """Every rank's ``data`` (of any length), in rank order, on every rank."""
    if not info.distributed:
        return [data]
    size = torch.tensor([len(data)], dtype=torch.int64, device=info.device)
    sizes = [torch.zeros_like(size) for _ in range(info.world_size)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8)
    padded[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    padded = padded.to(info.device)
    gathered = [torch.empty_like(padded) for _ in range(info.world_size)]
    dist.all_gather(gathered, padded)
    return [bytes(g[:int(s.item())].cpu().numpy()) for g, s in zip(gathered, sizes)]


@torch.no_grad()
def assert_same_on_all_ranks(module: torch.nn.Module, info: DistInfo, what: str) -> None:
    """Raise when ``module``'s parameters differ between ranks (compared by a float64 fingerprint)."""
    if not info.distributed:
        return
    fingerprint = torch.zeros(2, dtype=torch.float64, device=info.device)
    for i, param in enumerate(module.parameters()):
        values = param.detach().double()
        fingerprint[0] += values.sum() * (i + 1)  # weighted by position, so swapped tensors differ
        fingerprint[1] += values.abs().sum()
    low, high = all_reduce(fingerprint.clone(), info, "min"), all_reduce(fingerprint.clone(), info, "max")
    if not torch.equal(low, high):
        raise RuntimeError(f"the {what} weights differ between ranks (fingerprints from {low.tolist()} to "
                           f"{high.tolist()}); every rank must start from the same weights and take the same steps")
