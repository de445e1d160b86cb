"""The text recipe at GPU size, for a fixed time, measured like the CPU run: one call on a lent GPU.

    python benchmarks/text_gpu.py --minutes 8 --out runs/wn_gpu     # on a GPU: block text_gpu of docs/results/text.md
    python benchmarks/text_gpu.py --minutes 0.5 --out /tmp/wn_try --set preset=tiny --set batch_size=32 --print

It times a few training steps of ``wordnet_gpu`` (``--set`` changes any setting), sets the step count
that fills ``--minutes`` of training, trains the recipe for that many steps (its evaluation included:
``grammar_rate`` beside ``grammar_rate_real``, perplexity, copies, the likelihood bound), then runs
``benchmarks/text_baselines.py`` on the run, which trains the left-to-right causal transformer of the
same size for the same steps and batch on the same data (equal compute, to a few percent), and writes
both into the ``text_gpu`` block.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import threads_and_machine  # noqa: E402
from docblock import write_block  # noqa: E402

from multidiff.data import ShuffledBatches  # noqa: E402
from multidiff.recipes import get_recipe, make_config  # noqa: E402
from multidiff.recipes.common import device_of  # noqa: E402
from multidiff.train import Trainer  # noqa: E402

DOC = ROOT / "docs" / "results" / "text.md"
PROBE_STEPS = 30
ROWS = [("complete parses (link-grammar)", "grammar_rate", "grammar_rate_real"),
        ("trigram perplexity", "perplexity", "perplexity_real"),
        ("copies of training sentences", "copy_rate", "copy_rate_real"),
        ("distinct-2", "distinct_2", "distinct_2_real"),
        ("held-out bits / token (real column: the trigram's)", "nll_bits_per_token", "nll_ngram_bits_per_token"),
        ("keyword success", "keyword_success", None), ("infill accuracy", "infill_accuracy", None)]


def seconds_per_step(config) -> float:
    """Training seconds a step of ``config``'s recipe over its first steps (warm-up and compile included, so
    the fixed time is not overrun)."""
    domain = get_recipe(config.recipe).domain
    data = domain.load_data(config)
    model = domain.build_model(config, data)
    probe = replace(config, steps=PROBE_STEPS, checkpoint_every=0, sample_every=0)
    trainer = Trainer(model, domain.engine_config(probe), device=device_of(config), **domain.trainer_options(probe, data))
    batches = ShuffledBatches(domain.training_set(config, data), config.batch_size, seed=config.seed)
    start = time.perf_counter()
    trainer.fit(batches)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / PROBE_STEPS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, required=True, help="training time of the diffusion model")
    parser.add_argument("--out", type=Path, required=True, help="the run folder to write")
    parser.add_argument("--recipe", default="wordnet_gpu")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--num", type=int, default=500, help="samples per model in the baselines table")
    parser.add_argument("--print", action="store_true", help="print the block instead of writing the docs")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.settings)
    config = make_config(get_recipe(args.recipe), overrides)
    per_step = seconds_per_step(config)
    steps = max(10, int(args.minutes * 60 / per_step))
    config = replace(config, steps=steps, checkpoint_every=max(1, steps // 4), sample_every=0,
                     warmup_steps=min(config.warmup_steps, steps // 10))
    print(f"{per_step * 1000:.1f} ms a step: {steps} steps for {args.minutes} min", file=sys.stderr)
    run = get_recipe(args.recipe).train(config, args.out, progress=sys.stderr.isatty())
    report = json.loads((run / "eval.json").read_text())
    baselines = subprocess.run([sys.executable, str(Path(__file__).with_name("text_baselines.py")), "--run", str(run),
                                "--num", str(args.num), "--print"], capture_output=True, text=True, check=True).stdout
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    lines = [f"`{args.recipe}` ({', '.join(args.settings) or 'defaults'}) trained {steps} steps of "
             f"{config.batch_size} in {report['train_seconds'] / 60:.1f} min on {device} "
             f"({per_step * 1000:.0f} ms a step); {threads_and_machine(torch.get_num_threads())}.", "",
             "| figure | diffusion samples | real held-out sentences |", "| --- | --- | --- |"]
    for label, key, real_key in ROWS:
        if key in report:
            real = report.get(real_key) if real_key else None
            lines.append(f"| {label} | {report[key]:.3f} | {'-' if real is None else f'{real:.3f}'} |")
    lines += ["", "Beside it, the left-to-right baselines at the same steps and batch:", "", baselines.rstrip()]
    block = "\n".join(lines) + "\n"
    if args.print:
        print(block)
    else:
        write_block(DOC, "text_gpu", block, append_if_missing=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
