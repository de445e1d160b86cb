"""The training engine: exact resume after SIGKILL, crash-safe checkpoints, pruning,
NaN handling, the LR/EMA schedules and gradient accumulation.

Killed runs are forked processes (the DataLoader-worker pattern: one torch thread
in the child), so they start in milliseconds instead of re-importing torch."""

import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from multidiff.backbones import MLP, MLPConfig
from multidiff.core.losses import denoising_loss, edm
from multidiff.core.precond import make_precond
from multidiff.core.schedules import EDM
from multidiff.data import ShuffledBatches
from multidiff.train import (EMA, CheckpointError, TrainConfig, Trainer, latest_checkpoint, list_checkpoints,
                             lr_at, read_checkpoint, train)
from multidiff.train.run_checkpoints import STATE_TENSORS, checkpoints_dir

fork = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")

# small enough to run in well under a second, large enough to exercise warm-up, cosine decay, EMA warm-up
SMALL = TrainConfig(steps=60, lr=3e-3, warmup_steps=10, decay="cosine", min_lr_ratio=0.1, ema_decay=0.95,
                    log_every=5, checkpoint_every=10, keep_last=3, sample_every=1, seed=1)
# about 40 MB of weights: weights + EMA + two AdamW moments make a 160 MB checkpoint
LARGE = TrainConfig(steps=16, lr=1e-3, log_every=2, checkpoint_every=1, keep_last=2, seed=2)


def make_data(n: int = 512, seed: int = 0) -> dict[str, torch.Tensor]:
    """2-D points, fixed per-example sigmas and noise (for the deterministic loss) and their row index."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g) * 0.5 + torch.randint(0, 2, (n, 1), generator=g) * 2.0 - 1.0
    return {"x": x, "sigma": torch.exp(torch.randn(n, generator=g) - 0.5), "noise": torch.randn(n, 2, generator=g),
            "index": torch.arange(n)}


def make_model(width: int = 32, depth: int = 2, seed: int = 0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return make_precond("edm", MLP(MLPConfig(width=width, depth=depth)), EDM(sigma_data=1.0), sigma_data=1.0)


def fixed_noise_loss(model, batch, generator):
    """The EDM loss at the batch's own sigmas and noise: no randomness, so micro-batching or
    splitting over processes changes only the order of float additions."""
    return denoising_loss(model, batch["x"], batch["sigma"], noise=batch["noise"], weighting=edm(1.0))


def run(run_dir, config=SMALL, *, width=32, depth=2, batch_size=32, resume=False, sleep=0.0, stop_at=None):
    """One training session (the same in a forked child and in the test process)."""
    torch.set_num_threads(1)
    hook = (lambda step, ema, folder: time.sleep(sleep)) if sleep else None
    trainer = Trainer(make_model(width, depth), config, run_dir=run_dir, weighting=edm(1.0), on_sample=hook)
    return trainer.fit(ShuffledBatches(make_data(), batch_size, seed=3), resume=resume, stop_at=stop_at)


def start_child(**kwargs) -> multiprocessing.Process:
    import torch._dynamo  # noqa: F401  (the first optimizer imports it, 2 s; import it once, before forking)

    process = multiprocessing.get_context("fork").Process(target=run, kwargs=kwargs, daemon=True)
    process.start()
    return process


def wait_for(condition, process, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.is_alive(), f"the training process ended early (exit code {process.exitcode})"
        assert time.monotonic() < deadline, "timed out waiting for the training process"
        time.sleep(0.002)


def kill(process) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    assert process.exitcode == -signal.SIGKILL


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def losses(run_dir) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (Path(run_dir) / "metrics.jsonl").read_text().splitlines())]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- (a) exact resume after SIGKILL


@fork
def test_killed_and_resumed_run_is_bit_identical(tmp_path, one_thread):
    child = start_child(run_dir=tmp_path / "killed", sleep=0.01)  # ~10 ms a step: room to kill it mid-run
    wait_for(lambda: [s for s, _ in list_checkpoints(tmp_path / "killed")][-2:] == [10, 20], child)
    kill(child)
    assert [s for s, _ in list_checkpoints(tmp_path / "killed")][-1] < SMALL.steps  # it was killed mid-run
    resumed = run(tmp_path / "killed", resume=True)
    reference = run(tmp_path / "reference")
    assert resumed.step == reference.step == SMALL.steps
    assert_same_weights(resumed.model, reference.model)
    assert_same_weights(resumed.ema, reference.ema)
    # the log is continued, not duplicated: records after the checkpoint are dropped and written again
    assert losses(tmp_path / "killed") == losses(tmp_path / "reference")


def test_resume_refuses_to_overwrite_and_continues_a_finished_run(tmp_path, one_thread):
    first = run(tmp_path, stop_at=30)
    assert first.step == 30 and list_checkpoints(tmp_path)[-1][0] == 30  # a session ends with a checkpoint
    with pytest.raises(FileExistsError, match="resume=True"):
        run(tmp_path)
    finished = run(tmp_path, resume=True)
    again = run(tmp_path, resume=True)  # nothing left to train: the same weights come back
    assert again.step == finished.step == SMALL.steps
    assert_same_weights(again.model, finished.model)
    assert_same_weights(finished.ema, run(tmp_path / "reference").ema)


# ---------------------------------------------------------------- (b) crash-safe checkpoint writes


@fork
def test_sigkill_while_writing_never_loses_the_last_good_checkpoint(tmp_path, one_thread):
    rng = random.Random()
    run_dir, kills, hit_mid_write, good = tmp_path / "run", 0, 0, 0
    while kills < 3 or (not hit_mid_write and kills < 6):  # ~3 in 4 kills land inside a write
        child = start_child(run_dir=run_dir, config=LARGE, width=1024, depth=3, batch_size=8, resume=True)
        # wait until this child writes its first checkpoint (~0.3 s a write), then kill it at a random moment
        wait_for(lambda: any(checkpoints_dir(run_dir).glob(f".tmp-step-*-{child.pid}")), child)
        time.sleep(rng.uniform(0.0, 0.4))
        kill(child)
        kills += 1
        hit_mid_write += any(checkpoints_dir(run_dir).glob(f".tmp-step-*-{child.pid}"))
        found = latest_checkpoint(run_dir)  # never raises: a partial write is invisible
        if found is not None:
            path, state, skipped = found
            assert not skipped and state["step"] >= good
            good = state["step"]
    assert hit_mid_write, "no kill landed inside a checkpoint write; the test did not test what it should"
    # the rest in this process, checkpointing only at the end (checkpoint_every does not change the numbers)
    resumed = run(run_dir, replace(LARGE, checkpoint_every=0), width=1024, depth=3, batch_size=8, resume=True)
    assert not any(checkpoints_dir(run_dir).glob(".tmp-*"))  # leftovers are cleaned up
    assert [s for s, _ in list_checkpoints(run_dir)][-1] == LARGE.steps
    reference = train(make_model(1024, 3), ShuffledBatches(make_data(), 8, seed=3), LARGE, weighting=edm(1.0))
    assert_same_weights(resumed.model, reference.model)
    assert_same_weights(resumed.ema, reference.ema)


def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, one_thread):
    run(tmp_path, stop_at=30)
    latest = list_checkpoints(tmp_path)[-1][1]
    tensors = latest / STATE_TENSORS
    tensors.write_bytes(tensors.read_bytes()[:-1000])  # truncated, as by a full disk
    with pytest.raises(CheckpointError, match="damaged.*truncated.*delete this folder"):
        read_checkpoint(latest)
    with pytest.warns(UserWarning, match="skipping a damaged checkpoint.*step-00000030"):
        resumed = run(tmp_path, resume=True)
    assert (latest.parent / f"damaged-{latest.name}").is_dir()  # kept aside for inspection, out of the way
    assert_same_weights(resumed.model, run(tmp_path / "reference").model)


def test_no_readable_checkpoint_is_a_clear_error(tmp_path, one_thread):
    run(tmp_path, stop_at=20)
    for _, path in list_checkpoints(tmp_path):
        (path / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="no checkpoint .* can be read.*new run folder"):
        run(tmp_path, resume=True)


def test_checkpoints_hold_no_pickle(tmp_path, one_thread):
    run(tmp_path, stop_at=10)
    folder = list_checkpoints(tmp_path)[-1][1]
    assert sorted(p.name for p in folder.iterdir()) == ["state.json", "state.safetensors"]
    state = read_checkpoint(folder)
    assert state["step"] == 10 and state["data"]["position"] == 10 * 32
    assert set(state["optimizer"]["state"]) == set(range(len(list(make_model().parameters()))))  # int keys back


# ---------------------------------------------------------------- (c) pruning


def test_keep_last_prunes_old_checkpoints(tmp_path, one_thread):
    run(tmp_path, TrainConfig(steps=50, checkpoint_every=10, keep_last=2, log_every=10))
    assert [s for s, _ in list_checkpoints(tmp_path)] == [40, 50]
    assert sorted(p.name for p in checkpoints_dir(tmp_path).iterdir()) == ["step-00000040", "step-00000050"]


# ---------------------------------------------------------------- (d) NaN / inf


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, one_thread):
    calls = [0]

    def poisoned(model, batch, generator):
        calls[0] += 1
        loss = fixed_noise_loss(model, batch, generator)
        return loss * float("nan") if calls[0] == 26 else loss  # the 26th step's loss

    config = TrainConfig(steps=60, checkpoint_every=10, keep_last=5, log_every=10)
    trainer = Trainer(make_model(), config, run_dir=tmp_path, loss_fn=poisoned)
    with pytest.raises(FloatingPointError, match=r"NaN or infinite at step 26 \(detected at step 30\).*"
                                                 r"step-00000020.*lower the learning rate"):
        trainer.fit(ShuffledBatches(make_data(), 32, seed=3))
    assert [s for s, _ in list_checkpoints(tmp_path)] == [10, 20]
    state = read_checkpoint(list_checkpoints(tmp_path)[-1][1])
    assert all(torch.isfinite(t).all() for t in [*state["model"].values(), *state["ema"]["weights"].values()])


# ---------------------------------------------------------------- (e) schedules and accumulation


def test_learning_rate_warmup_and_decay_at_known_steps(tmp_path, one_thread):
    cosine = TrainConfig(steps=110, lr=1.0, warmup_steps=10, decay="cosine", min_lr_ratio=0.1)
    # warm-up: lr (step + 1) / warmup_steps; then cosine from lr at step 10 to lr * 0.1 at the last step (109)
    for step, lr in {0: 0.1, 4: 0.5, 9: 1.0, 10: 1.0, 109: 0.1, 200: 0.1}.items():
        assert lr_at(cosine, step) == pytest.approx(lr, abs=1e-12), step
    assert lr_at(cosine, 60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 50 / 99)))
    assert lr_at(cosine, 10 + 99 // 2) > 0.55 > lr_at(cosine, 10 + 99 // 2 + 1)  # halfway down: 0.1 + 0.9 / 2
    constant = TrainConfig(steps=100, lr=2.0, warmup_steps=4)
    assert [lr_at(constant, s) for s in (0, 1, 3, 4, 99)] == [0.5, 1.0, 2.0, 2.0, 2.0]
    # the trainer uses exactly these rates: the logged one is the last step's
    config = TrainConfig(steps=12, lr=1e-3, warmup_steps=4, decay="cosine", log_every=1)
    trainer = Trainer(make_model(), config, metrics_path=tmp_path / "log.jsonl")
    result = trainer.fit(ShuffledBatches(make_data(), 32))
    assert [r["lr"] for r in result.history] == [lr_at(config, s) for s in range(12)]
    assert trainer.optimizer.param_groups[0]["lr"] == lr_at(config, 11)


def test_ema_warmup_decays():
    model = torch.nn.Linear(2, 1, bias=False)
    ema = EMA(model, decay=0.5, warmup=True)
    expected = [0.1, 2 / 11, 3 / 12, 4 / 13, 5 / 14, 6 / 15, 7 / 16, 8 / 17, 0.5, 0.5]  # min(0.5, (1+t)/(10+t))
    for t, decay in enumerate(expected):
        assert ema.current_decay() == pytest.approx(decay)
        before = ema.module.weight.clone()
        with torch.no_grad():
            model.weight.add_(1.0)
        ema.update(model)
        assert torch.allclose(ema.module.weight, decay * before + (1 - decay) * model.weight), t
    assert EMA(model, decay=0.5).current_decay() == 0.5  # no warm-up unless asked


def test_gradient_accumulation_equals_one_big_batch(one_thread):
    def trained(grad_accum, steps):
        config = TrainConfig(steps=steps, grad_accum=grad_accum, grad_clip=0.0, lr=1e-2)
        trainer = Trainer(make_model(), config, loss_fn=fixed_noise_loss)
        trainer.fit(ShuffledBatches(make_data(), 32 // grad_accum, seed=3))
        return trainer.model

    for steps in (1, 3):
        big, accumulated = trained(1, steps), trained(4, steps)
        # the last step's gradients are still on the parameters: they agree to float32 rounding (the sums
        # run in another order). The weights agree less closely: AdamW divides by sqrt(v) + eps, so an
        # element whose gradient is ~1e-10 moves by a sizeable fraction of lr (1e-2) on a rounding
        # difference; they must still agree to 1% of one step.
        for (name, a), (_, b) in zip(big.named_parameters(), accumulated.named_parameters(), strict=True):
            assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7), name
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-4), name
        assert sum(p.grad.abs().sum() for p in big.parameters()) > 0


def tensorboard_losses(run_dir) -> list[tuple[int, float]]:
    """(step, loss) as TensorBoard shows them, after its purging of resumed runs."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    events = accumulator.EventAccumulator(str(Path(run_dir) / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars("train/loss")]


def test_tensorboard_matches_the_json_log_across_a_resume(tmp_path, one_thread):
    """A crash after step 40 was logged but before its checkpoint: the run resumes from step 20
    and logs steps 25-40 again; TensorBoard, like metrics.jsonl, shows each step once, with the
    new value. A fresh run in the same folder starts a fresh TensorBoard log."""
    pytest.importorskip("torch.utils.tensorboard")
    config = replace(SMALL, steps=40, checkpoint_every=20)
    run(tmp_path, config)
    first = tensorboard_losses(tmp_path)
    assert [step for step, _ in first] == [5, 10, 15, 20, 25, 30, 35, 40]
    newest_step, newest = list_checkpoints(tmp_path)[-1]
    assert newest_step == 40
    shutil.rmtree(newest)  # as if killed after logging step 40, before checkpointing it
    run(tmp_path, config, resume=True, batch_size=16)  # a different batch: the re-logged losses differ
    resumed = tensorboard_losses(tmp_path)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [step for step, _ in resumed] == [record["step"] for record in logged] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert resumed[:4] == first[:4] and resumed[4:] != first[4:]
    assert [value for _, value in resumed] == pytest.approx([record["loss"] for record in logged], rel=1e-6)
    shutil.rmtree(checkpoints_dir(tmp_path))  # start over in the same folder
    run(tmp_path, replace(config, steps=10))
    assert [step for step, _ in tensorboard_losses(tmp_path)] == [5, 10]
