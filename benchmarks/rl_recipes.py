"""Figures of the RL domain, written into docs/rl.md.

    python benchmarks/rl_recipes.py plan --run runs/um --name umaze          # planner and baselines, 50 episodes
    python benchmarks/rl_recipes.py steps --run runs/um                      # success against sampler steps
    python benchmarks/rl_recipes.py guidance --run runs/pendulum --episodes 10 # scales x noise windows x seeds
    python benchmarks/rl_recipes.py plan --run runs/pendulum --name pendulum --episodes 20 \
        --variant guidance_scale=0.03 --variant guidance_scale=0 --variant num_plans=1,guidance_scale=0

``plan``: ``multidiff plan RUN`` (the run's own sampler and steps) beside the
data-collecting controller, a random policy and behaviour cloning, on the same
episodes; with ``--variant`` once per change of the planner's settings. Writes block
``rl_NAME`` and, for a maze, the picture of planned and executed paths to
docs/img/rl_NAME.png.

``guidance``: Pendulum's mean return for each value-guidance scale (at every noise level
or only at low ones, ``--sigma-max``) at equal ``num_plans``, over several seeds
(block ``rl_guidance``).

``steps``: the planner's success, normalised score, wall time and denoiser
calls of one plan at 8, 16, 32 and 64 sampler steps (Diffuser's Maze2D
configuration samples each plan with 256 DDPM steps). Block ``rl_steps``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from docblock import write_block  # noqa: E402

DOC = ROOT / "docs" / "rl.md"
IMG = ROOT / "docs" / "img"


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _machine() -> str:
    import torch

    return f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"


def _with_settings(run: Path, **changes):
    """A temporary copy of ``run`` whose saved planner settings take ``changes``."""
    tmp = Path(tempfile.mkdtemp(prefix="rl-bench-"))
    copy = tmp / run.name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    saved = json.loads((copy / "config.json").read_text())
    saved["config"]["planner"].update(changes)
    (copy / "config.json").write_text(json.dumps(saved))
    return copy


def _variant(text: str) -> dict:
    """``"num_plans=1,guidance_scale=0"`` -> planner settings to change."""
    out = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        out[key.strip()] = json.loads(value)
    return out


def plan_table(run: Path, name: str, episodes: int, variants: list[dict]) -> str:
    from multidiff.recipes import trajectory

    reports = []
    for changes in variants or [{}]:
        target = _with_settings(run, **changes) if changes else run
        try:
            report = trajectory.plan(target, episodes=episodes, seed=0)
        finally:
            if changes:  # the temporary copy
                shutil.rmtree(target.parent, ignore_errors=True)
        reports.append((changes, report))
        print(json.dumps(dict(report)), flush=True)
    first = reports[0][1]
    maze = first.get("success_rate") is not None
    d4rl = "d4rl_reference" in first
    head = ["policy", "success" if maze else None, "mean return", "normalised score",
            "normalised (D4RL's controller = 100)" if d4rl else None, "steps to success" if maze else None,
            "denoiser calls / plan"]
    head = [h for h in head if h]
    rows = []

    def row(label, figures, calls="-"):
        cells = [label]
        if maze:
            cells.append(_fmt(figures["success_rate"]))
        cells += [_fmt(figures["mean_return"], 4), _fmt(figures["normalised_score"], 4)]
        if d4rl:
            cells.append(_fmt(figures.get("normalised_score_d4rl"), 4))
        if maze:
            cells.append(_fmt(figures.get("mean_steps_to_success"), 4))
        cells.append(calls)
        rows.append(cells)

    for changes, report in reports:
        row(f"**diffusion planner ({planner_label(report)})**", report,
            f"{report['denoiser_calls_per_plan']:.3g} (max {report.get('max_denoiser_calls_per_plan', '-')})")
    for key, label in (("reference", "data-collecting controller, noise-free (reference)"),
                       ("d4rl_reference", "D4RL's Maze2D waypoint controller (p 10, d -1, 0.1 m)"),
                       ("bc", "behaviour cloning (MLP, same data)"), ("random", "random policy")):
        if key in first:
            row(label, first[key])
    text = "| " + " | ".join(head) + " |\n" + "| --- " * len(head) + "|\n"
    text += "".join("| " + " | ".join(r) + " |\n" for r in rows)
    saved = trajectory.read_config(run)
    changed = {k: v for k, v in asdict(saved).items() if v != getattr(type(saved)(), k) and k != "out"}
    replanning = (f"replanning every {first['replan_every']} steps" if first["replan_every"] else
                  "one plan per goal, tracked open loop")
    text += (f"\n`{first['env_id']}`, {episodes} episodes of at most {first['max_steps']} steps (seed 0, the same "
             f"starts for every policy); tracking `{first['tracking']}`, {replanning}, {first['num_plans']} plan(s) "
             f"sampled at once; one plan {first['plan_seconds']:.3f} s with {first['denoiser_calls_per_plan']:.0f} "
             f"denoiser calls, {first['plans_per_episode']:.1f} plans an episode. Trained with `{saved.recipe}`'s "
             f"defaults{''.join(f', {k}={v}' for k, v in changed.items())}; {_machine()}; run `{run}`.\n")
    if maze:  # the first variant's planned and executed paths, drawn from this measurement
        IMG.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            written = trajectory.write_plan(first, Path(tmp) / "plan")
            shutil.copyfile(next(p for p in written if p.suffix == ".png"), IMG / f"rl_{name}.png")
        text += f"\n![planned (dashed) and executed (solid) paths](img/rl_{name}.png)\n"
    return text


def planner_label(report: dict) -> str:
    """What a planner row ran: sampler and steps, plans and how one is chosen, replanning."""
    parts = [f"`{report['sampler']}`, {report['sample_steps']} steps"]
    plans = report["num_plans"]
    if report.get("arrival_min"):
        parts.append(f"earliest feasible of {plans} arrival steps")
    elif report.get("guidance_scale") is not None:  # a run with a value model
        parts.append(f"{plans} plans ranked by value" if plans > 1 else "1 plan, no ranking")
        parts.append(f"value guidance {report['guidance_scale']:g}")
    elif plans > 1:
        parts.append(f"{plans} plans, goal at the last step")
    else:
        parts.append("goal at the last step")
    if report["replan_every"]:
        parts.append(f"replan every {report['replan_every']}" +
                     (f", warm start {report['warm_start']} steps" if report.get("warm_start") else ""))
    else:
        parts.append("open loop")
    if report.get("wall_margin"):
        parts.append(f"kept {report['wall_margin']:g} m off the walls")
    if report.get("retries"):
        parts.append(f"up to {report['retries']} more batches while none is feasible")
    if report.get("retime"):
        parts.append("routes re-timed to the data's top speed" if report["retime"] == 1 else
                     f"routes re-timed to {report['retime']:g} of the data's top speed")
    return ", ".join(parts)


def steps_table(run: Path, values: list[int], episodes: int) -> str:
    from multidiff.recipes import trajectory

    rows = ["| sampler steps | denoiser calls / plan | success | normalised score | one plan (s) |",
            "| --- | --- | --- | --- | --- |"]
    sampler = None
    for k in values:
        report = trajectory.plan(run, episodes=episodes, seed=0, steps=k)
        sampler = report["sampler"]
        success = report["success_rate"]
        rows.append(f"| {k} | {report['denoiser_calls_per_plan']:.0f} | "
                    f"{'-' if success is None else f'{success:.2f}'} | {_fmt(report['normalised_score'], 4)} | "
                    f"{report['plan_seconds']:.3f} |")
        print(rows[-1], flush=True)
    return "\n".join(rows) + (f"\n\nSampler `{sampler}` on its default grid, {episodes} episodes (seed 0); "
                              f"{_machine()}; run `{run}`.\n")


def guidance_table(run: Path, scales: list[float], windows: list[float], plans: list[int], seeds: list[int],
                   episodes: int) -> str:
    """Mean return of the planner for each guidance scale, noise window and plan count, per seed."""
    import numpy as np

    from multidiff.recipes import trajectory

    rows = ["| plans | guidance scale | applied at | " + " | ".join(f"seed {s}" for s in seeds) +
            " | mean | spread (std over seeds) |",
            "| --- | --- | --- | " + "--- | " * len(seeds) + "--- | --- |"]
    first = None
    for count in plans:
        for scale in scales:
            for window in (windows if scale > 0 else [0.0]):
                target = _with_settings(run, guidance_scale=scale, guidance_sigma_max=window, num_plans=count)
                try:
                    returns = []
                    for seed in seeds:
                        report = trajectory.plan(target, episodes=episodes, seed=seed)
                        first = first or report
                        returns.append(report["mean_return"])
                finally:
                    shutil.rmtree(target.parent, ignore_errors=True)
                where = "-" if scale == 0 else ("every sigma" if window == 0 else f"sigma <= {window:g}")
                rows.append(f"| {count} | {scale:g} | {where} | " + " | ".join(f"{r:.1f}" for r in returns) +
                            f" | {np.mean(returns):.1f} | {np.std(returns):.1f} |")
                print(rows[-1], flush=True)
    return "\n".join(rows) + (f"\n\n`{first['env_id']}`, {episodes} episodes per seed (the seed draws the reset "
                              f"states and the sampler's noise), `{first['sampler']}` with {first['sample_steps']} "
                              f"steps, replanning every {first['replan_every']} steps; the value model ranks the "
                              f"plans in every row; {_machine()}; run `{run}`.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=["plan", "steps", "guidance"])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--name", default="umaze", help="plan: the block and picture name (rl_NAME)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--variant", action="append", type=_variant, default=[],
                        help="plan: planner settings to compare, e.g. 'guidance_scale=0' or 'num_plans=1,"
                             "guidance_scale=0' (repeat for more rows; none: the run's own)")
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--scales", type=float, nargs="+", default=[0, 0.03, 0.3, 3])
    parser.add_argument("--sigma-max", type=float, nargs="+", default=[0, 1],
                        help="guidance: noise windows (0: every sigma)")
    parser.add_argument("--plans", type=int, nargs="+", default=[16])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    if args.task == "guidance":
        write_block(DOC, "rl_guidance", guidance_table(args.run, args.scales, args.sigma_max, args.plans, args.seeds,
                                                       args.episodes), append_if_missing=True)
    elif args.task == "plan":
        write_block(DOC, f"rl_{args.name}", plan_table(args.run, args.name, args.episodes, args.variant),
                    append_if_missing=True)
    else:
        write_block(DOC, "rl_steps", steps_table(args.run, args.steps, args.episodes), append_if_missing=True)


if __name__ == "__main__":
    main()
