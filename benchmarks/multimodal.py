"""Prompt-conditioned recipes (#30), written into docs/multimodal.md.

    python benchmarks/multimodal.py fashion                 # trains fashion_text (timed), then measures it
    python benchmarks/multimodal.py fashion --run runs/ft   # measures an existing run folder instead
    python benchmarks/multimodal.py notes [--run runs/nt]   # the same for notes_text

Each task evaluates the run on its prompt sets (``eval.json``'s: seen phrasings, held-out phrasings and,
for notes, held-out pitch x instrument pairs) at a few guidance scales with seed 1 (the run's own
eval.json is seed 0), and rewrites the ``multimodal_fashion`` / ``multimodal_notes`` block with the
table, the training time and the run's settings. Pictures: docs/img/fashion_text.png (one column per
class, rows: held-out phrasings; the prompts are listed under it) and docs/img/notes_text.png
(spectrograms of held-out pairs); sounds: docs/audio/notes_text/ (ten held-out-pair WAVs).

The label-conditioned baselines of the same size are measured elsewhere and cited in the page's prose:
``fashion_unet`` shrunk to U-Net "tiny" / 3,000 steps (``python benchmarks/image_recipes.py fashion-cpu``,
docs/results/images.md) and the ``notes`` recipe (docs/audio.md), which trains on every pair.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import code_version, md_table, threads_and_machine  # noqa: E402
from docblock import write_block  # noqa: E402

import torch  # noqa: E402

PAGE = ROOT / "docs" / "multimodal.md"
GUIDANCE = {"fashion": (1.5, 3.0, 5.0), "notes": (1.5, 3.0, 5.0)}
METRICS = {"fashion": ["classifier_accuracy"],
           "notes": ["pitch_within_50_cents", "instrument_accuracy", "classifier_accuracy"]}
SETS = {"fashion": ["seen", "held_out_phrasing"], "notes": ["seen", "held_out_phrasing", "held_out_combination"]}
RECIPE = {"fashion": "fashion_text", "notes": "notes_text"}


def trained(task: str, run: Path | None) -> tuple[Path, float | None]:
    """The run folder (trained now, timed from start to eval.json, when ``run`` is None)."""
    from multidiff.recipes import get_recipe, make_config

    if run is not None:
        return run, None
    recipe = get_recipe(RECIPE[task])
    out = ROOT / "runs" / RECIPE[task]
    start = time.perf_counter()
    recipe.train(make_config(recipe, {}), out, progress=True)
    return out, time.perf_counter() - start


def measure(task: str, args) -> None:
    from multidiff.recipes import get_recipe
    from multidiff.train import load_config

    run, seconds = trained(task, args.run)
    recipe = get_recipe(RECIPE[task])
    config = load_config(run)["config"]
    own = json.loads((run / "eval.json").read_text())
    rows = []
    for guidance in GUIDANCE[task]:
        report = recipe.evaluate(run, seed=1, guidance=guidance, num=args.num)
        for name in SETS[task]:
            rows.append([f"{guidance:g}", name.replace("_", " ")] +
                        [f"{report[f'{name}_{metric}']:.3f}" for metric in METRICS[task]])
        print(json.dumps(report), flush=True)
    header = ["guidance", "prompts"] + [m.replace("_", " ") for m in METRICS[task]]
    timing = (f"trained in **{seconds / 60:.1f} min** from start to eval.json" if seconds is not None
              else f"training {own['train_seconds'] / 60:.1f} min (the run's eval.json)")
    machine = threads_and_machine(torch.get_num_threads())
    block = (f"Measured with `python benchmarks/multimodal.py {task}` on {machine}, "
             f"torch {torch.__version__}, {code_version('multidiff')}: `{RECIPE[task]}` at its defaults "
             f"({config['steps']} steps, batch {config['batch_size']}, preset {config['preset']!r}, "
             f"{config['prompts_per_class']} training prompts per class, MiniLM's "
             f"{config.get('text_states', 'last')!r} token states), {timing}. "
             f"{args.num or config['num_eval']} samples per prompt set and guidance, seed 1, {config['sampler']} "
             f"with {config['sample_steps']} steps (the run's default guidance is {config['guidance']:g}).\n\n"
             + md_table(header, rows) + "\n")
    write_block(PAGE, f"multimodal_{task}", block, append_if_missing=True)
    (pictures_fashion if task == "fashion" else pictures_notes)(run, config)


def pictures_fashion(run: Path, config: dict) -> None:
    from multidiff.adapters.image import save_grid
    from multidiff.data.prompts import FASHION
    from multidiff.recipes import get_recipe

    prompts = [FASHION.prompts(label, 3, split="held_out", seed=7)[row] for row in range(3) for label in range(10)]
    drawn = get_recipe("fashion_text").sample(run, num=len(prompts), prompts=prompts, seed=2)
    save_grid(drawn["samples"], ROOT / "docs" / "img" / "fashion_text.png", nrow=10, value_range=(0.0, 1.0))
    listing = "\n".join(f"{i // 10 + 1}.{i % 10 + 1} {p}" for i, p in enumerate(prompts))
    write_block(PAGE, "multimodal_fashion_prompts", "```text\n" + listing + "\n```\n", append_if_missing=True)


def pictures_notes(run: Path, config: dict) -> None:
    import shutil

    from multidiff.adapters.audio import save_spectrograms
    from multidiff.data.prompts import NOTES, held_out_combination
    from multidiff.recipes import get_recipe

    held_out = [k for k in range(150) if held_out_combination(k)]
    picks = held_out[::max(1, len(held_out) // 10)][:10]
    prompts = [NOTES.prompts(k, 1, split="held_out", seed=7)[0] for k in picks]
    recipe = get_recipe("notes_text")
    drawn = recipe.sample(run, num=len(prompts), prompts=prompts, seed=2)
    save_spectrograms(drawn["spectrograms"], ROOT / "docs" / "img" / "notes_text.png", ncol=5,
                      titles=[str(i + 1) for i in range(len(prompts))])
    listing = "\n".join(f"{i + 1}. {p}" for i, p in enumerate(prompts))
    write_block(PAGE, "multimodal_notes_prompts", "```text\n" + listing + "\n```\n", append_if_missing=True)
    folder = ROOT / "docs" / "audio" / "notes_text"
    shutil.rmtree(folder, ignore_errors=True)
    recipe.write_samples(drawn, folder, run)
    (folder.with_suffix(".npz")).unlink(missing_ok=True)
    (folder.with_suffix(".png")).unlink(missing_ok=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=("fashion", "notes"))
    parser.add_argument("--run", type=Path, help="an existing run folder of the task's recipe (default: train one)")
    parser.add_argument("--num", type=int, help="samples per prompt set (default: the run's num_eval)")
    args = parser.parse_args(argv)
    measure(args.task, args)


if __name__ == "__main__":
    main()
