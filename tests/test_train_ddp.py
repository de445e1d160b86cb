"""The training engine under DistributedDataParallel: 2 processes, gloo on the CPU.

The workers set the environment ``torchrun`` would set (RANK, WORLD_SIZE,
MASTER_ADDR, ...) and call the same code as a one-process run."""

import json
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from multidiff.data import ShuffledBatches
from multidiff.train import TrainConfig, Trainer, init_distributed, list_checkpoints, shutdown_distributed
from multidiff.train.distributed import assert_same_on_all_ranks
from test_train_resume import fixed_noise_loss, make_data, make_model

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or
                                "fork" not in multiprocessing.get_all_start_methods(),
                                reason="needs torch.distributed and fork")

WORLD = 2
BATCH = 16  # the global micro-batch: 8 rows per rank
# two micro-batches per step exercise DDP's no_sync; checkpoints at 2, 4, 6 let a run resume from 3's predecessor
CONFIG = TrainConfig(steps=6, lr=1e-2, grad_accum=2, log_every=2, checkpoint_every=2, keep_last=5, sample_every=3,
                     seed=4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, port: int, root: Path) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    seen = []

    def recording_loss(model, batch, generator):
        seen.append(batch["index"].clone())
        return fixed_noise_loss(model, batch, generator)

    def on_sample(step, ema, run_dir):
        (run_dir / f"sample-rank{rank}-step{step}").touch()

    def trainer(run_dir, seed, **kwargs):  # a different initialisation per rank: DDP must broadcast rank 0's
        return Trainer(make_model(seed=seed + rank), CONFIG, run_dir=root / run_dir, **kwargs)

    full = trainer("full", 10, loss_fn=recording_loss, on_sample=on_sample).fit(ShuffledBatches(make_data(), BATCH,
                                                                                                 seed=3))
    # the same run in two sessions; the second starts from other weights, which the checkpoint replaces
    trainer("split", 10, loss_fn=fixed_noise_loss).fit(ShuffledBatches(make_data(), BATCH, seed=3), stop_at=3)
    resumed = trainer("split", 30, loss_fn=fixed_noise_loss).fit(ShuffledBatches(make_data(), BATCH, seed=3),
                                                                 resume=True)
    # a rank whose EMA drifted is caught on every rank (the engine checks at each checkpoint and at the end)
    if rank == 1:
        with torch.no_grad():
            next(full.ema.parameters()).add_(1e-6)
    try:
        assert_same_on_all_ranks(full.ema, init_distributed(), "EMA")
        caught = 0
    except RuntimeError:
        caught = 1
    tensors = {"seen": torch.stack(seen), "caught_drift": torch.tensor(caught)}
    if rank == 1:
        with torch.no_grad():
            next(full.ema.parameters()).sub_(1e-6)
    for name, module in (("model", full.model), ("ema", full.ema), ("resumed", resumed.model),
                         ("resumed_ema", resumed.ema)):
        tensors.update({f"{name}/{key}": value.contiguous() for key, value in module.state_dict().items()})
    save_file(tensors, root / f"rank{rank}.safetensors")
    shutdown_distributed()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    import torch._dynamo  # noqa: F401  (imported by the first optimizer; once here rather than in each child)

    root = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.start_processes(worker, args=(free_port(), root), nprocs=WORLD, start_method="fork")
    return root, [load_file(root / f"rank{rank}.safetensors") for rank in range(WORLD)]


def part(tensors: dict, name: str) -> dict:
    return {key.split("/", 1)[1]: value for key, value in tensors.items() if key.startswith(name + "/")}


def test_ranks_stay_in_sync(ddp_run):
    _, ranks = ddp_run
    for name in ("model", "ema"):
        a, b = part(ranks[0], name), part(ranks[1], name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert all(int(r["caught_drift"]) == 1 for r in ranks)  # and a drift of 1e-6 would have been caught


def test_ranks_draw_distinct_examples_that_make_up_the_global_batch(ddp_run, tmp_path):
    _, ranks = ddp_run
    seen0, seen1 = ranks[0]["seen"], ranks[1]["seen"]  # (micro-batches, 8)
    assert seen0.shape == (CONFIG.steps * CONFIG.grad_accum, BATCH // WORLD)
    for a, b in zip(seen0, seen1):
        assert not set(a.tolist()) & set(b.tolist())
    # together: exactly the rows of a one-process run with the whole batch, in the same order
    one = ShuffledBatches(make_data(), BATCH, seed=3)
    expected = torch.stack([next(one)["index"] for _ in range(len(seen0))])
    assert torch.equal(torch.cat([seen0, seen1], dim=1), expected)


def test_matches_one_process_with_the_combined_batch(ddp_run, tmp_path):
    """Averaging the two ranks' gradients is the gradient of the combined batch, up to the
    order of float additions (see test_gradient_accumulation_equals_one_big_batch for the tolerance)."""
    _, ranks = ddp_run
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = Trainer(make_model(seed=10), CONFIG, loss_fn=fixed_noise_loss).fit(ShuffledBatches(make_data(),
                                                                                                     BATCH, seed=3))
    finally:
        torch.set_num_threads(threads)
    for name, module in (("model", single.model), ("ema", single.ema)):
        ddp = part(ranks[0], name)
        for key, value in module.state_dict().items():
            assert torch.allclose(ddp[key], value, rtol=1e-5, atol=1e-4), (name, key)


def test_resume_under_ddp_is_bit_identical(ddp_run):
    _, ranks = ddp_run
    for tensors in ranks:
        for name in ("model", "ema"):
            full, resumed = part(tensors, name), part(tensors, f"resumed{'' if name == 'model' else '_ema'}")
            assert all(torch.equal(full[k], resumed[k]) for k in full), name


def test_only_rank_zero_writes(ddp_run):
    root, _ = ddp_run
    assert sorted(p.name for p in (root / "full").glob("sample-*")) == ["sample-rank0-step3", "sample-rank0-step6"]
    steps = [json.loads(line)["step"] for line in (root / "full" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]  # one record per log step, not one per rank
    assert [s for s, _ in list_checkpoints(root / "full")] == [2, 4, 6]
    assert [s for s, _ in list_checkpoints(root / "split")] == [2, 3, 4, 6]  # 3: the end of the first session


def test_resume_on_another_number_of_processes(ddp_run, tmp_path):
    """The data position carries over; the random numbers cannot, and a warning says so."""
    import shutil
    from dataclasses import replace

    root, ranks = ddp_run
    shutil.copytree(root / "split", tmp_path / "split")
    longer = replace(CONFIG, steps=CONFIG.steps + 2)
    trainer = Trainer(make_model(seed=50), longer, run_dir=tmp_path / "split", loss_fn=fixed_noise_loss)
    with pytest.warns(UserWarning, match="written by 2 processes, this run has 1"):
        result = trainer.fit(ShuffledBatches(make_data(), BATCH, seed=3), resume=True)
    assert result.step == longer.steps
    assert [s for s, _ in list_checkpoints(tmp_path / "split")][-1] == longer.steps


@pytest.mark.slow
def test_toy2d_recipe_under_torchrun(tmp_path):
    """The command line a user runs: torchrun starts 2 processes, rank 0 writes the run folder."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "multidiff", "train", "toy2d", "--steps", "20", "--batch-size", "32", "--set", "num_train=256",
               "--set", "num_eval=64", "--set", "sample_steps=3", "--set", "width=16", "--set", "depth=1",
               "--set", "checkpoint_every=10", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("config.json", "model.safetensors", "ema.safetensors", "eval.json", "samples.png"):
        assert (out / name).is_file(), name
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2 * i for i in range(1, 11)]
    assert [s for s, _ in list_checkpoints(out)] == [10, 20]
