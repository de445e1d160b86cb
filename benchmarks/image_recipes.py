"""Quality of the image recipes, written into docs/image_recipes.md.

    python benchmarks/image_recipes.py digits               # trains the default recipe (~4 min on 2 cores)
    python benchmarks/image_recipes.py digits --run runs/d  # measures an existing run folder instead
    python benchmarks/image_recipes.py inpainting           # with the digits run above (seconds)
    python benchmarks/image_recipes.py superres             # trains superres (~11 min on 2 cores)
    python benchmarks/image_recipes.py fashion-cpu          # a small Fashion-MNIST U-Net on the CPU (~20 min)

``digits``: the acceptance figures, a guidance sweep, a sampler-steps sweep
and a memorisation check; rewrites the ``digits_quality`` block and the
pictures docs/img/digits_samples.png (100 samples at the default guidance,
one class per column) and docs/img/digits_guidance.png (the same noise and
labels at each guidance scale, one row per scale).

``inpainting``: the digits run completes a hidden part (bottom half, centre
square) of every test digit, with and without its label; rewrites the ``digits_inpainting`` block and
docs/img/digits_inpaint.png (rows: input with the hole black, replacement,
reconstruction guidance, original).

``superres``: the trained run's eval.json (super-resolved test images next
to bilinear upsampling) and a sampler-steps sweep; rewrites the
``superres_quality`` block and docs/img/superres.png (rows: low-resolution
input, sample, original).

``fashion-cpu``: ``fashion_unet`` shrunk to what 2 CPU cores train in about a
quarter of an hour (U-Net "tiny", 3000 steps) and a guidance sweep on its
samples; rewrites the ``fashion_cpu`` block and docs/img/fashion_cpu_samples.png
(100 samples at the default guidance, one class per column).

Every digits evaluation draws 1000 samples (100 per class) and measures them with
the bundled digits classifier: its accuracy on the intended labels, the
Frechet distance of its features to the 359 test images, and the floor (1000
real training images against the same test images, mean of 5 draws).
Memorisation: the pixel-space distance of each sample to its nearest
training image, beside the same distance for real test images (which the
model never saw); samples much closer than test images would be copies.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from docblock import write_block  # noqa: E402

import torch  # noqa: E402

from multidiff.adapters.image import save_grid  # noqa: E402
from multidiff.recipes import images  # noqa: E402

GUIDANCE = (1.0, 1.25, 1.5, 2.0, 3.0)
STEPS = (6, 8, 12, 24, 48)
DOC = ROOT / "docs" / "image_recipes.md"


def publish(args, name: str, lines: list[str], pictures: Callable[[], None]) -> None:
    """Print the block made of ``lines``; unless ``--no-write``, draw the block's pictures and put
    it between the ``name`` markers of docs/image_recipes.md."""
    block = "\n".join(lines) + "\n"
    print(block)
    if not args.no_write:
        pictures()
        page = ROOT / "docs" / "results" / "images.md" if name in ("digits_inpainting", "fashion_cpu") else DOC
        write_block(page, name, block)


def nearest_distance(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """L2 distance (in [0, 1] pixel units) from each row of ``x`` to its nearest row of ``reference``."""
    return torch.cdist(x.flatten(1).double(), reference.flatten(1).double()).min(1).values


def row(label: str, report: dict) -> str:
    return (f"| {label} | {report['classifier_accuracy']:.3f} | {report['frechet']:.2f} | "
            f"{report['frechet_floor']:.2f} | {report['frechet_over_floor']:.2f} |")


def trained_run(recipe: str, run: Path | None) -> tuple[Path, images.ImageConfig, dict, list[str]]:
    """Train ``recipe`` with its defaults (or read ``run``); the run folder, its config, its
    eval.json and the opening lines of the block (machine, and the wall time when trained here)."""
    config = images.CONFIGS[recipe]()
    if run is None:
        start = time.perf_counter()
        run_dir = images.train(config, Path("runs") / f"{recipe}-benchmark", progress=sys.stderr.isatty())
        wall = time.perf_counter() - start
    else:
        run_dir, wall = run, None
        config = images.read_config(run_dir)
    trained = json.loads((run_dir / "eval.json").read_text())
    lines = [f"Measured with `python benchmarks/image_recipes.py {recipe}` on {platform.machine()} "
             f"({os.cpu_count()} cores), torch {torch.__version__}, {torch.get_num_threads()} threads.", ""]
    training = f"{trained['train_seconds'] / 60:.1f} min"
    took = (f"took **{wall / 60:.1f} min** from start to `eval.json` (training {training})" if wall is not None
            else f"trained in {training} (wall time not measured: an existing run folder)")
    lines += [f"`multidiff train {recipe}` (defaults: {config.steps} steps, batch {config.batch_size}, "
              f"{config.backbone} \"{config.preset}\") {took}.", ""]
    return run_dir, config, trained, lines


def digits(args) -> None:
    run_dir, config, trained, lines = trained_run("digits", args.run)
    lines += ["At the default guidance "
              f"({config.guidance}), {config.sampler}, {config.sample_steps} steps:", "",
              "| | classifier accuracy | Frechet | floor | Frechet / floor |", "| --- | --- | --- | --- | --- |",
              row("trained run (eval.json)", trained), ""]

    lines += ["Guidance sweep (same run, same noise):", "",
              "| guidance | classifier accuracy | Frechet | floor | Frechet / floor |", "| --- | --- | --- | --- | --- |"]
    strips = []
    for scale in GUIDANCE:
        lines.append(row(f"{scale}", images.evaluate(run_dir, guidance=scale)))
        strips.append(images.sample(run_dir, num=20, guidance=scale, seed=1)["samples"])
    lines += ["", f"Sampler steps at guidance {config.guidance} ({config.sampler}):", "",
              "| steps | classifier accuracy | Frechet | floor | Frechet / floor |", "| --- | --- | --- | --- | --- |"]
    for steps in STEPS:
        lines.append(row(f"{steps}", images.evaluate(run_dir, steps=steps)))

    data = images.load_data(config)
    drawn = images.sample(run_dir, num=1000)
    sample_nn = nearest_distance(drawn["samples"], data.train["x"].float())
    test_nn = nearest_distance(data.test["x"].float(), data.train["x"].float())
    lines += ["", "Memorisation (L2 distance to the nearest training image, pixels in [0, 1], 64 pixels):", "",
              "| | median | 5th percentile | share below the test images' 5th percentile |", "| --- | --- | --- | --- |",
              f"| 1000 samples | {sample_nn.median():.2f} | {sample_nn.quantile(0.05):.2f} | "
              f"{(sample_nn < test_nn.quantile(0.05)).double().mean():.3f} |",
              f"| 359 real test images | {test_nn.median():.2f} | {test_nn.quantile(0.05):.2f} | 0.050 |", ""]

    def pictures() -> None:
        save_grid(drawn["samples"][:100], ROOT / "docs" / "img" / "digits_samples.png", nrow=10, value_range=(0, 1))
        save_grid(torch.cat(strips), ROOT / "docs" / "img" / "digits_guidance.png", nrow=20, value_range=(0, 1),
                  min_cell=32)

    publish(args, "digits_quality", lines, pictures)


def fashion_cpu(args) -> None:
    """fashion_unet shrunk to what 2 CPU cores train in ~15 minutes: U-Net "tiny", 3000 steps,
    batch 64, the digits recipe's optimiser settings; a guidance sweep on its samples."""
    from dataclasses import replace

    run_dir = args.run
    wall = None
    if run_dir is None:
        config = replace(images.FashionUNetConfig(), preset="tiny", steps=3000, batch_size=64, lr=2e-3,
                         warmup_steps=200, ema_decay=0.999, num_eval=2000, device="cpu", checkpoint_every=1000,
                         sample_every=0)
        start = time.perf_counter()
        run_dir = images.train(config, Path("runs") / "fashion-cpu-benchmark", progress=sys.stderr.isatty())
        wall = time.perf_counter() - start
    config = images.read_config(run_dir)
    trained = json.loads((run_dir / "eval.json").read_text())
    took = f"**{wall / 60:.1f} min** from start to `eval.json`, " if wall is not None else ""
    lines = [f"Measured with `python benchmarks/image_recipes.py fashion-cpu` on {platform.machine()} "
             f"({os.cpu_count()} cores), torch {torch.__version__}, {torch.get_num_threads()} threads: "
             f"`fashion_unet` with {config.backbone} \"{config.preset}\", {config.steps} steps, batch "
             f"{config.batch_size}, lr {config.lr}, EMA {config.ema_decay}; {took}training "
             f"{trained['train_seconds'] / 60:.1f} min. {trained['num']} samples, {config.sampler}, "
             f"{config.sample_steps} steps, against the 10,000 test images (the classifier's own test accuracy: "
             f"{trained['classifier_test_accuracy']:.3f}).", "",
             "| guidance | classifier accuracy | Frechet | floor | Frechet / floor |", "| --- | --- | --- | --- | --- |"]
    for scale in (1.0, 1.5, 2.0, 3.0):
        lines.append(row(f"{scale}", trained if scale == config.guidance else images.evaluate(run_dir, guidance=scale)))
    lines.append("")

    def pictures() -> None:
        drawn = images.sample(run_dir, num=100, seed=1)
        save_grid(drawn["samples"], ROOT / "docs" / "img" / "fashion_cpu_samples.png", nrow=10, value_range=(0, 1),
                  min_cell=56)

    publish(args, "fashion_cpu", lines, pictures)


def superres(args) -> None:
    run_dir, config, trained, lines = trained_run("superres", args.run)
    trained = images.evaluate(run_dir)  # the same draw as eval.json (seed 0), with today's metric set
    header = ["| | PSNR (dB) | low-res MSE | classifier accuracy | Frechet | floor |",
              "| --- | --- | --- | --- | --- | --- |"]

    def sr_row(label: str, r: dict) -> str:
        return (f"| {label} | {r['psnr_db']:.2f} | {r['low_res_mse']:.1e} | {r['classifier_accuracy']:.3f} | "
                f"{r['frechet']:.1f} | {r['frechet_floor']:.1f} |")

    lines += [f"{trained['num']} test images, 2x average-pooled to 14x14 and super-resolved "
              f"({config.sampler}, {config.sample_steps} steps), against bilinear upsampling of the same inputs:",
              "", *header, sr_row("diffusion (eval.json)", trained),
              sr_row("bilinear", {**trained, **{key: trained["bilinear_" + key] for key in
                                                ("psnr_db", "low_res_mse", "classifier_accuracy", "frechet")}}),
              f"| the originals (whole test split) | inf | 0 | {trained['classifier_test_accuracy']:.3f} | - | - |",
              "", f"Sampler steps ({config.sampler}):", "", *header]
    for steps in STEPS:
        lines.append(sr_row(f"{steps} steps", images.evaluate(run_dir, steps=steps)))
    lines += ["", "The Frechet distance of the super-resolved images falls below the floor because they are "
              "not independent draws: each one reconstructs a test image, and the Frechet reference is the test "
              "set itself, while the floor compares independent training images with it. Bilinear upsampling keeps "
              "the digit's identity (accuracy) but its blur puts its features far from any real image.", ""]

    def pictures() -> None:
        drawn = images.sample(run_dir, num=10, seed=1)
        images.write_samples(drawn, ROOT / "docs" / "img" / "superres", npz=False)

    publish(args, "superres_quality", lines, pictures)


def inpainting(args) -> None:
    """Fill a hole (bottom half, centre square) in every test digit with the trained digits model:
    without the label by replacement and with reconstruction guidance, and by replacement given the
    true label; beside the training-mean image pasted into the hole."""
    from multidiff.adapters.image import decode, encode, inpaint, inpaint_mask
    from multidiff.core.samplers import default_sigmas
    from multidiff.metrics.images import evaluate_images, load_classifier

    run_dir = args.run if args.run is not None else Path("runs") / "digits-benchmark"
    model, config = images.load_run(run_dir)
    data = images.load_data(config)
    classifier = load_classifier("digits")
    known = encode(data.test["x"])  # (359, 1, 8, 8)
    labels = data.test["label"]
    null = torch.full((len(known),), data.num_classes)
    sigmas = default_sigmas(model.schedule, config.sample_steps, config.sampler)
    mean_image = encode(data.train["x"]).mean(0, keepdim=True)
    lines = [f"Measured with `python benchmarks/image_recipes.py inpainting`: a hole in each of the {len(known)} "
             f"test digits (the bottom half, or the centred 4x4 square: 32 or 16 of 64 pixels) filled by the "
             f"trained digits model, {config.sampler}, {config.sample_steps} steps, without its label (null "
             f"class) unless the row says so. The classifier sees the completed image; the known pixels are kept "
             f"exactly.", "",
             "| hole | filled by | classifier accuracy (true label) | Frechet to the test set |",
             "| --- | --- | --- | --- |"]
    picture = {}
    for region in ("bottom", "center"):
        mask = inpaint_mask(len(known), 8, 8, region)
        filled = {"the training-mean image (baseline)": mask * known + (1 - mask) * mean_image}
        for name, scale, cond in (("diffusion, replacement", 0.0, null),
                                  ("diffusion, reconstruction guidance 1", 1.0, null),
                                  ("diffusion, replacement, given the true label", 0.0, labels)):
            filled[name] = inpaint(model, known, mask, sigmas, method=config.sampler, cond=cond,
                                   generator=torch.Generator().manual_seed(0), reconstruction_scale=scale)
        for name, images_filled in filled.items():
            report = evaluate_images(decode(images_filled), labels, data.test["x"], classifier)
            lines.append(f"| {region} | {name} | {report['classifier_accuracy']:.3f} | {report['frechet']:.2f} |")
        if region == "bottom":
            picture = dict(mask=mask, filled=filled)
    lines += [f"| none | nothing: the original test digits | {classifier.test_accuracy:.3f} | 0 |", "",
              "Without the label the completion is a guess among the digits that share the visible part (a "
              "5, a 6 and a 9 agree above their middle row), so the accuracy measures how much of the identity "
              "the visible pixels carry; what the model adds is realism (the Frechet column). Given the label, "
              "it completes the digit the label names while keeping the known pixels.", ""]

    def pictures() -> None:
        mask, filled = picture["mask"][:10], list(picture["filled"].values())[1:3]
        rows = [known[:10] * mask + (1 - mask) * -1, *(f[:10] for f in filled), known[:10]]
        save_grid(torch.cat(rows), ROOT / "docs" / "img" / "digits_inpaint.png", nrow=10)

    publish(args, "digits_inpainting", lines, pictures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", choices=["digits", "superres", "inpainting", "fashion-cpu"],
                        help="inpainting: with the digits run of --run (default runs/digits-benchmark)")
    parser.add_argument("--run", type=Path, help="an existing run folder of that recipe (default: train one)")
    parser.add_argument("--no-write", action="store_true", help="print the block, write nothing to docs/")
    args = parser.parse_args()
    {"digits": digits, "superres": superres, "inpainting": inpainting, "fashion-cpu": fashion_cpu}[args.recipe](args)


if __name__ == "__main__":
    main()
