"""Fingerprints of short, seeded runs: did a refactor change behaviour?

Trains five recipes for a few steps with tiny settings through the CLI (the contract users
and our evaluators go through), then samples, inpaints, infills and plans from them, and
writes the SHA-256 of every weights file, every array of every .npz, every text output and
every JSON report (wall-clock fields dropped). Run it on two commits and compare:

    python benchmarks/behaviour_hashes.py --out /tmp/after.json
    python benchmarks/behaviour_hashes.py --compare /tmp/before.json /tmp/after.json

Everything runs on one CPU thread, so float summation order is fixed. Pictures (.png) are
fingerprinted too: they come from the same arrays, so they differ only if the drawing does.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

TIMING_WORDS = ("seconds", "time", "per_second", "per_s", "speed", "elapsed", "rtf", "wall")

# recipe -> (train options, follow-up commands run on the run folder; {run} and {out} are filled in)
RUNS = {
    "toy2d": (["--steps", "50", "--batch-size", "64", "--set", "num_train=512", "--set", "num_eval=64",
               "--set", "sample_steps=4", "--set", "width=16", "--set", "depth=1", "--set", "checkpoint_every=25"],
              [["sample", "{run}", "--num", "16", "--seed", "3", "--out", "{out}/sample"],
               ["eval", "{run}", "--num", "32", "--steps", "3"]]),
    "digits": (["--steps", "50", "--batch-size", "32", "--set", "num_eval=40", "--set", "sample_steps=3",
                "--set", "threads=1", "--set", "sample_every=25", "--set", "checkpoint_every=25"],
               [["sample", "{run}", "--num", "10", "--label", "3", "--guidance", "2", "--out", "{out}/sample"],
                ["inpaint", "{run}", "--num", "4", "--region", "center", "--steps", "3", "--out", "{out}/inpaint"]]),
    "spoken_digits": (["--steps", "50", "--batch-size", "8", "--set", "clips_per_class=2", "--set", "num_eval=10",
                       "--set", "sample_steps=2", "--set", "griffin_lim_iters=2", "--set", "threads=1",
                       "--set", "preset=tiny", "--set", "checkpoint_every=0", "--set", "sample_every=25"],
                      [["sample", "{run}", "--num", "4", "--label", "7", "--out", "{out}/sample"],
                       ["inpaint", "{run}", "--num", "3", "--region", "gap", "--out", "{out}/inpaint"]]),
    "wordnet": (["--steps", "50", "--batch-size", "16", "--set", "num_eval=20", "--set", "sample_steps=3",
                 "--set", "threads=1", "--set", "preset=tiny", "--set", "width=32", "--set", "depth=1",
                 "--set", "classifier_steps=20", "--set", "checkpoint_every=25", "--set", "sample_every=25"],
                [["sample", "{run}", "--num", "6", "--out", "{out}/sample"],
                 ["sample", "{run}", "--num", "4", "--keyword", "river", "--out", "{out}/keyword"],
                 ["infill", "{run}", "--template", "the ___ sat on the ___", "--num", "3", "--out", "{out}/infill"],
                 ["inpaint", "{run}", "--num", "4", "--out", "{out}/inpaint"]]),
    "pointmaze_umaze": (["--steps", "50", "--batch-size", "8", "--device", "cpu", "--set", "horizon=16",
                         "--set", "preset=tiny", "--set", "warmup_steps=2", "--set", "bc_steps=30",
                         "--set", "eval_episodes=2", "--set", "sample_steps=2", "--set", "threads=1",
                         "--set", "checkpoint_every=0", "--set", "data_steps=3000", "--set", "value_steps=20",
                         "--set", "inverse_steps=20"],
                        [["plan", "{run}", "--episodes", "2", "--steps", "3", "--out", "{out}/plan"],
                         ["sample", "{run}", "--num", "3", "--out", "{out}/sample"]]),
}


def _drop_timings(value):
    if isinstance(value, dict):
        return {k: _drop_timings(v) for k, v in value.items() if not any(w in k.lower() for w in TIMING_WORDS)}
    if isinstance(value, list):
        return [_drop_timings(v) for v in value]
    return value


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def fingerprint(folder: Path) -> dict[str, str]:
    """``relative path[:array] -> hash`` of everything in ``folder`` that a run's behaviour decides."""
    prints = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        if name.startswith("tensorboard"):  # event files are named and stamped with the wall clock
            continue
        if path.suffix == ".npz":
            with zipfile.ZipFile(path) as archive:  # the arrays, not the zip's timestamps
                for member in sorted(archive.namelist()):
                    array = np.load(io.BytesIO(archive.read(member)), allow_pickle=False)
                    prints[f"{name}:{member}"] = _digest(array.tobytes() + str(array.dtype).encode())
        elif path.suffix in (".json", ".jsonl"):  # metrics.jsonl too, less its speed fields
            lines = path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
            records = [_drop_timings(json.loads(line)) for line in lines if line.strip()]
            prints[name] = _digest(json.dumps(records, sort_keys=True).encode())
        else:
            prints[name] = _digest(path.read_bytes())
    return prints


def run_all(names: list[str], work: Path) -> dict[str, dict[str, str]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    results = {}
    for name in names:
        train_options, follow_ups = RUNS[name]
        run, out = work / name / "run", work / name / "out"
        out.mkdir(parents=True, exist_ok=True)
        commands = [["train", name, "--out", str(run), *train_options]]
        commands += [[part.format(run=run, out=out) for part in command] for command in follow_ups]
        for index, command in enumerate(commands):
            done = subprocess.run([sys.executable, "-m", "multidiff", *command, "--no-progress"], env=env,
                                  capture_output=True, text=True)
            if done.returncode != 0:  # recorded as a fingerprint of its own, so a comparison shows it
                print(f"{name}: multidiff {' '.join(command)} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
                last_line = done.stderr.splitlines()[-1] if done.stderr else ""
                (out / f"failed-{index}-{command[0]}.txt").write_text(last_line)
                break
            if command[0] in ("eval", "plan", "infill"):  # their report goes to stdout
                report = done.stdout if command[0] != "plan" else done.stdout[done.stdout.index("{"):]
                lines = [line for line in report.splitlines() if not line.startswith("wrote ")]  # paths differ
                (out / f"stdout-{index}-{command[0]}.json").write_text(
                    json.dumps(json.loads(report)) if command[0] != "infill" else json.dumps(lines))
        results[name] = {**{f"run/{k}": v for k, v in fingerprint(run).items()},
                         **{f"out/{k}": v for k, v in fingerprint(out).items()}}
        print(f"{name}: {len(results[name])} fingerprints", file=sys.stderr)
    return results


def compare(before: dict, after: dict) -> int:
    differences = 0
    for recipe in sorted(set(before) | set(after)):
        old, new = before.get(recipe, {}), after.get(recipe, {})
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                differences += 1
                print(f"{recipe}: {key}: {old.get(key)} -> {new.get(key)}")
        same = sum(old.get(key) == new.get(key) for key in old)
        print(f"{recipe}: {same} of {len(old)} fingerprints identical")
    print("identical" if not differences else f"{differences} differences")
    return 1 if differences else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="JSON file to write the fingerprints to")
    parser.add_argument("--recipes", nargs="*", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--work", type=Path, help="folder for the runs (default: a temporary one)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        return compare(*(json.loads(p.read_text()) for p in args.compare))
    with tempfile.TemporaryDirectory() as tmp:
        results = run_all(args.recipes, args.work or Path(tmp))
    text = json.dumps(results, indent=1, sort_keys=True)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
