"""Every core sampler on a trained toy2d model: sliced W2 to held-out points.

    python benchmarks/toy2d_samplers.py [--run-dir DIR] [--no-write]

Trains the default two-moons recipe into DIR when DIR holds no run, then
evaluates each sampler at 8 and 32 steps on its own default spacing (and
`unipc` on plain log-SNR spacing, for contrast), and writes the table into
docs/toy2d.md between the `toy2d_samplers` markers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from docblock import write_block  # noqa: E402
from multidiff.core.samplers import SAMPLERS  # noqa: E402
from multidiff.recipes.toy2d import Toy2DConfig, evaluate, train  # noqa: E402

DOC = ROOT / "docs" / "toy2d.md"
STEPS = (8, 32)


def table(run_dir: Path) -> str:
    rows = ["| sampler (default spacing) | NFE | SW2 at 8 steps | NFE | SW2 at 32 steps |",
            "| --- | ---: | ---: | ---: | ---: |"]
    floor = baseline = None
    for name, info in SAMPLERS.items():
        cells = []
        for steps in STEPS:
            report = evaluate(run_dir, sampler=name, steps=steps)
            floor, baseline = report["sliced_w2"]["real_floor"], report["sliced_w2"]["gaussian_baseline"]
            cells += [str(info.nfe(steps)), f"{report['sliced_w2']['model']:.4f}"]
        rows.append(f"| {name} ({info.spacing}) | " + " | ".join(cells) + " |")
    return "\n".join(rows) + f"\n\nReal-vs-real floor {floor:.4f}; Gaussian baseline {baseline:.4f}.\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "toy2d-moons-seed0")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if not (args.run_dir / "config.json").exists():
        train(Toy2DConfig(), args.run_dir)
    block = table(args.run_dir)
    print(block)
    if not args.no_write:
        write_block(DOC, "toy2d_samplers", block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
