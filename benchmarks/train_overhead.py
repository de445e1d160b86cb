"""Training steps per second: the engine (multidiff.train.Trainer) vs a bare PyTorch loop.

    python benchmarks/train_overhead.py            # rewrites the train_overhead block of docs/results/training_overhead.md
    python benchmarks/train_overhead.py --quick    # fewer steps and repeats, prints the table, writes nothing

Both sides train the same preconditioned backbone on the same in-memory data
with the same per-step work: a shuffled minibatch, per-example sigmas, the
EDM-weighted denoising loss, backward, gradient-norm clipping at 1 and an
AdamW step (``foreach=True``, as the engine builds it; "bare, default AdamW"
uses PyTorch's default, the slower per-tensor loop on the CPU, for
reference). "bare + EMA" also updates an EMA copy, as the engine does. The
engine runs with its defaults: once without a run folder, once with one (a
JSON-lines record every 100 steps and a checkpoint at the end). Each timing
covers a whole run, from building the optimizer to the last step; the
variants are interleaved, in a rotating order, and every figure is the median
over the repeats.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = ("multidiff/train", "multidiff/data")  # what it measures: the provenance line flags uncommitted changes
sys.path.insert(0, str(ROOT))

from common import code_version  # noqa: E402
from docblock import write_block  # noqa: E402

import torch  # noqa: E402

from multidiff.backbones import MLP, MLPConfig  # noqa: E402
from multidiff.core.losses import denoising_loss, edm  # noqa: E402
from multidiff.core.precond import make_precond  # noqa: E402
from multidiff.core.schedules import EDM  # noqa: E402
from multidiff.data import ShuffledBatches  # noqa: E402
from multidiff.train import EMA, TrainConfig, Trainer  # noqa: E402

DOC = ROOT / "docs" / "results" / "training_overhead.md"
SIGMA_DATA, LR, EMA_DECAY, SEED = 0.5, 1e-3, 0.999, 0


def unet_backbone():
    """UNet2D's "tiny" preset on 16x16 RGB images when the image backbones import, else None."""
    try:
        from multidiff.backbones import UNet2D, UNet2DConfig
    except ImportError:
        return None
    return UNet2D(UNet2DConfig.preset("tiny", image_size=16))


def cases(quick: bool) -> list[dict]:
    found = []
    if unet_backbone() is not None:
        found.append({"name": "UNet2D tiny, 16x16x3", "build": unet_backbone, "shape": (3, 16, 16), "batch": 16,
                      "steps": 20 if quick else 100})
    found.append({"name": "MLP 64x3 (toy2d), 2-D", "build": lambda: MLP(MLPConfig(dim=2, width=64, depth=3)),
                  "shape": (2,), "batch": 256, "steps": 100 if quick else 1000})
    return found


def build_model(case):
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        return make_precond("edm", case["build"](), EDM(sigma_data=SIGMA_DATA), sigma_data=SIGMA_DATA)


def make_data(case) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(SEED)
    return {"x": torch.randn(8 * case["batch"], *case["shape"], generator=generator) * SIGMA_DATA}


def bare(case, with_ema: bool, foreach: bool | None = True) -> float:
    """The loop one writes by hand; returns seconds for the whole run. ``foreach=True`` is
    the engine's AdamW; ``None`` is PyTorch's default (the per-tensor loop on the CPU)."""
    model, data = build_model(case), make_data(case)["x"]
    weighting, generator, batch = edm(SIGMA_DATA), torch.Generator().manual_seed(SEED), case["batch"]
    start = clock()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, foreach=foreach)
    ema = EMA(model, EMA_DECAY, warmup=True) if with_ema else None
    order, position = torch.randperm(len(data), generator=generator), 0
    model.train()
    for _ in range(case["steps"]):
        if position + batch > len(data):
            order, position = torch.randperm(len(data), generator=generator), 0
        x0 = data[order[position:position + batch]]
        position += batch
        optimizer.zero_grad(set_to_none=True)
        sigma = model.schedule.sample_sigmas(batch, generator=generator)
        loss = denoising_loss(model, x0, sigma, weighting=weighting, generator=generator).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if ema is not None:
            ema.update(model)
    return elapsed(start)


def engine(case, with_run_dir: bool) -> float:
    model, batches = build_model(case), ShuffledBatches(make_data(case), case["batch"], seed=SEED)
    config = TrainConfig(steps=case["steps"], lr=LR, ema_decay=EMA_DECAY, seed=SEED)
    with tempfile.TemporaryDirectory() as tmp:
        start = clock()
        trainer = Trainer(model, config, weighting=edm(SIGMA_DATA), run_dir=tmp if with_run_dir else None)
        trainer.fit(batches)
        return elapsed(start)


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def elapsed(start: tuple[float, float]) -> tuple[float, float]:
    """(wall-clock, CPU) seconds since ``start``: CPU time leaves out what other processes took."""
    wall, cpu = clock()
    return wall - start[0], cpu - start[1]


VARIANTS = {"bare": lambda c: bare(c, False), "bare + EMA": lambda c: bare(c, True),
            "bare, default AdamW": lambda c: bare(c, False, foreach=None),
            "engine": lambda c: engine(c, False), "engine + run folder": lambda c: engine(c, True)}


def measure(case, repeats: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Steps per wall-clock second and per CPU second of each variant, one list per variant."""
    names = list(VARIANTS)
    for name in names:  # warm-up: first-call costs (imports, allocator) stay out of the figures
        VARIANTS[name](dict(case, steps=3))
    wall, cpu = {name: [] for name in names}, {name: [] for name in names}
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            wall_s, cpu_s = VARIANTS[name](case)
            wall[name].append(case["steps"] / wall_s)
            cpu[name].append(case["steps"] / cpu_s)
    return wall, cpu


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def paired_ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """Per-repeat ratios: the runs of one repeat ran back to back, so they share the machine's load."""
    return [a / b for a, b in zip(numerator, denominator)]


def describe(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.3f} ({min(ratios):.2f}-{max(ratios):.2f})"


def report(results: list[tuple[dict, tuple[dict, dict]]], repeats: int) -> str:
    lines = [f"Generated by `python benchmarks/train_overhead.py` ({code_version(*CODE)}, torch {torch.__version__}, "
             f"Python {platform.python_version()}, {torch.get_num_threads()} torch thread(s), {cpu_name()}, float32; "
             f"median of {repeats} interleaved runs; ratios: median of the per-repeat ratios (their range)).", "",
             "| model | params | batch | steps a run | bare loop (steps/s) | bare + EMA | engine | engine + run folder "
             "| engine + run folder / bare | engine / bare + EMA | bare, default AdamW |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    verdicts, by_cpu = [], []
    for case, (rates, cpu_rates) in results:
        median = {name: statistics.median(values) for name, values in rates.items()}
        params = sum(p.numel() for p in build_model(case).parameters())
        strict = paired_ratios(rates["engine + run folder"], rates["bare"])
        like_for_like = paired_ratios(rates["engine"], rates["bare + EMA"])
        lines.append(f"| {case['name']} | {params:,} | {case['batch']} | {case['steps']} | {median['bare']:.1f} | "
                     f"{median['bare + EMA']:.1f} | {median['engine']:.1f} | {median['engine + run folder']:.1f} | "
                     f"{describe(strict)} | {describe(like_for_like)} | {median['bare, default AdamW']:.1f} |")
        ratio = statistics.median(strict)
        verdicts.append(f"{case['name']}: {'met' if ratio >= 0.95 else 'NOT met'} ({ratio:.3f}x)")
        cpu_strict = paired_ratios(cpu_rates["engine + run folder"], cpu_rates["bare"])
        cpu_like = paired_ratios(cpu_rates["engine"], cpu_rates["bare + EMA"])
        by_cpu.append(f"{case['name']}: engine + run folder / bare {describe(cpu_strict)}, "
                      f"engine / bare + EMA {describe(cpu_like)}")
    lines += ["", "Target: the engine with its defaults (EMA, run folder) runs at >= 0.95x the bare loop's steps/s "
              "(wall clock). " + "; ".join(verdicts) + ".", "",
              "The same ratios by CPU time of the process (what other processes on the machine took is left out): "
              + "; ".join(by_cpu) + ".", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats; print only")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: steadier timings)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 7)
    results = []
    for case in cases(args.quick):
        rates = measure(case, repeats)
        results.append((case, rates))
        print(f"{case['name']}: " + ", ".join(f"{name} {statistics.median(v):.1f}" for name, v in rates[0].items()),
              file=sys.stderr)
    block = report(results, repeats)
    print(block)
    if not (args.quick or args.no_write):
        write_block(DOC, "train_overhead", block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
