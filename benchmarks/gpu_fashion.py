"""Training speed and memory of the Fashion-MNIST recipes on one GPU: bf16 and torch.compile on/off.

    python benchmarks/gpu_fashion.py                 # speed table; rewrites the gpu_training block of docs/results/gpu.md
    python benchmarks/gpu_fashion.py --quality       # also trains both recipes with their defaults, Frechet reached
    python benchmarks/gpu_fashion.py --device cpu --preset tiny --steps 6 --no-write   # a smoke run anywhere

For each recipe (fashion_unet, fashion_dit) and each of bf16 off/on x compile
off/on, the engine trains the recipe's model on the recipe's data and batch
for ``3 x steps`` optimizer steps; the figure is the throughput of the last
third (compilation and warm-up excluded) and the peak GPU memory of the run.
Without the Fashion-MNIST files it stops with the loader's message.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from docblock import write_block  # noqa: E402

import torch  # noqa: E402

from multidiff.core.losses import edm  # noqa: E402
from multidiff.data import ShuffledBatches  # noqa: E402
from multidiff.recipes import images  # noqa: E402
from multidiff.recipes.common import engine_config, label_dropout_loss  # noqa: E402
from multidiff.train import Trainer  # noqa: E402

RECIPES = ("fashion_unet", "fashion_dit")


def throughput(config: images.ImageConfig, data, train_set, *, steps: int, bf16: bool, compile: bool,
               device: str) -> tuple[float, float | None]:
    """(images/s over the last ``steps`` of ``3 steps``, peak memory in GiB or None on the CPU)."""
    model = images.build_model(config, data.shape, data.num_classes)
    train_config = replace(engine_config(config), steps=3 * steps, log_every=steps, checkpoint_every=0,
                           sample_every=0, autocast=bf16, compile=compile, warmup_steps=0)
    loss_fn = partial(label_dropout_loss, weighting=edm(config.sigma_data), dropout=config.label_dropout,
                      null_class=data.num_classes)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = Trainer(model, train_config, loss_fn=loss_fn, device=device).fit(
        ShuffledBatches(train_set, config.batch_size, seed=0))
    memory = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return result.history[-1]["examples_per_s"], memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps per timed third")
    parser.add_argument("--preset", help="override the recipes' backbone preset (e.g. tiny for a smoke run)")
    parser.add_argument("--quality", action="store_true", help="also train both recipes with their defaults")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "CPU"
    lines = [f"Measured with `python benchmarks/gpu_fashion.py` on {device_name}, torch {torch.__version__}; "
             f"throughput over the last {args.steps} of {3 * args.steps} steps.", "",
             "| recipe | parameters | batch | bf16 | compile | images/s | peak memory (GiB) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for recipe in RECIPES:
        config = images.CONFIGS[recipe]()
        if args.preset:
            config = replace(config, preset=args.preset)
        data = images.load_data(config)
        train_set = images.training_set(config, data)
        parameters = sum(p.numel() for p in images.build_model(config, data.shape, data.num_classes).parameters())
        for bf16 in (False, True):
            for compile in (False, True):
                speed, memory = throughput(config, data, train_set, steps=args.steps, bf16=bf16, compile=compile,
                                           device=args.device)
                memory_text = f"{memory:.2f}" if memory is not None else "n/a (CPU)"
                lines.append(f"| {recipe} | {parameters / 1e6:.1f}M | {config.batch_size} | {'on' if bf16 else 'off'} "
                             f"| {'on' if compile else 'off'} | {speed:.0f} | {memory_text} |")
                print(lines[-1], flush=True)
    if args.quality:
        lines += ["", "| recipe | steps | training time | Frechet | floor | classifier accuracy |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for recipe in RECIPES:
            config = replace(images.CONFIGS[recipe](), device=args.device)
            start = time.perf_counter()
            run_dir = images.train(config, Path("runs") / f"{recipe}-benchmark")
            report = json.loads((run_dir / "eval.json").read_text())
            lines.append(f"| {recipe} | {config.steps} | {(time.perf_counter() - start) / 60:.1f} min | "
                         f"{report['frechet']:.2f} | {report['frechet_floor']:.2f} | "
                         f"{report['classifier_accuracy']:.3f} |")
            print(lines[-1], flush=True)
    block = "\n".join(lines) + "\n"
    print(block)
    if not args.no_write:
        write_block(ROOT / "docs" / "results" / "gpu.md", "gpu_training", block)


if __name__ == "__main__":
    main()
