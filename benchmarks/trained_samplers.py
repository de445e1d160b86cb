"""Samplers on trained networks: multidiff's defaults vs diffusers' EDM schedulers, same network, same noise.

No exact ODE solution exists for a network, so the reference is the
network's own probability-flow ODE solved to convergence: ``heun`` on 256
karras steps (511 NFE; 1024 for toy2d) from the same starting noise, checked
against half as many. Each sampler's distance to it (RMS, in data units: pixels in [0, 1]
for images) at NFE 4, 6, 8, 12, 24, 48 shows whether it converges, and a
distribution metric at NFE 4-12 (Frechet distance and classifier accuracy
for digits, sliced W2 to held-out points for toy2d) shows what the error
costs.

    python benchmarks/trained_samplers.py digits RUN_DIR [--num 300] [--no-write]
    python benchmarks/trained_samplers.py toy2d RUN_DIR [--num 2000] [--no-write]
    python benchmarks/trained_samplers.py spoken_digits RUN_DIR [--num 200] [--no-write]
    python benchmarks/trained_samplers.py notes RUN_DIR [--num 200] [--no-write]

Runs come from ``multidiff train digits|toy2d|spoken_digits|notes --out RUN_DIR``
(the audio runs: distances in model space, the normalised log-mel in [-1, 1];
the metric decodes with Griffin-Lim and uses the run's bundled classifier, of
digits or of pitch classes). Writes the tables into
docs/results/trained_samplers.md between the ``trained_samplers_<recipe>`` markers.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import rms  # noqa: E402
from docblock import write_block  # noqa: E402

from multidiff.core.samplers import DEFAULT_METHOD, SAMPLERS, default_sigmas, sample  # noqa: E402
from multidiff.core.samplers.calibrate import calibrate_sigmas, starting_grids  # noqa: E402

DOC = ROOT / "docs" / "results" / "trained_samplers.md"
NFES = (4, 6, 8, 12, 24, 48)
METRIC_NFES = (4, 6, 8, 12)
REFERENCE_STEPS = {"digits": 256, "toy2d": 1024, "spoken_digits": 256, "notes": 256}  # toy2d's thin data need more: 256 vs 128 steps differ by 2e-3
# (method, spacing (None: its default), options)
MULTIDIFF = (("unipc", None, {}), ("unipc", None, {"order": 3}), ("dpmpp_3m", None, {}),
             ("dpmpp_3m", None, {"variant": "dpmsolver"}), ("dpmpp_2m", None, {}),
             ("dpmpp_3m", "logsnr", {}), ("dpmpp_3m", "logsnr", {"variant": "dpmsolver"}), ("unipc", "karras", {}),
             ("unipc", "logsnr", {}), ("unipc", None, {"variant": "bh1"}),
             ("unipc", None, {"order": 3, "variant": "bh1", "lower_order_final": True}))


@dataclass
class Task:
    """A trained network as the samplers see it."""

    denoiser: Callable  # D(x, sigma) -> x0_hat, guidance included
    schedule: object
    x_T: torch.Tensor  # noise * sigma_max
    to_data: Callable  # model space -> data space (images: [-1, 1] -> [0, 1])
    metric: Callable  # data-space samples -> {name: value}
    metric_names: tuple


# ---------------------------------------------------------------- the two runs


def digits_task(run_dir: Path, num: int, seed: int) -> Task:
    from multidiff.core.guidance import ClassifierFreeGuidance
    from multidiff.metrics.images import evaluate_images, load_classifier
    from multidiff.recipes.images import decode, load_data, load_run

    model, config = load_run(run_dir, device="cpu")
    data = load_data(config)
    labels = torch.arange(num) % data.num_classes
    guided = ClassifierFreeGuidance(model, config.guidance, torch.tensor([data.num_classes]))
    classifier = load_classifier(config.dataset, train_if_missing=False)

    def denoiser(x, sigma):
        with torch.no_grad():
            return guided(x.float(), sigma.float(), labels).double()

    def metric(samples):
        m = evaluate_images(samples.float(), labels, data.test["x"], classifier, real_train=data.train["x"], seed=0)
        return {"Frechet": m["frechet"], "accuracy": m["classifier_accuracy"]}

    x_T = torch.randn((num, *data.shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return Task(denoiser, model.schedule, x_T * model.schedule.sigma_max, decode, metric, ("Frechet", "accuracy"))


def toy2d_task(run_dir: Path, num: int, seed: int) -> Task:
    from multidiff.metrics import DISTANCES
    from multidiff.recipes.toy2d import load_run, points

    model, config = load_run(run_dir)
    heldout = points(config, "heldout", num)

    def denoiser(x, sigma):
        with torch.no_grad():
            return model(x.float(), sigma.float()).double()

    def metric(samples):
        return {"sliced W2": DISTANCES["sliced_w2"](samples.float(), heldout)}

    x_T = torch.randn((num, 2), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return Task(denoiser, model.schedule, x_T * model.schedule.sigma_max, lambda x: x, metric, ("sliced W2",))


def audio_task(run_dir: Path, num: int, seed: int) -> Task:
    """An audio run (spoken_digits or notes): distances in model space (normalised log-mel in [-1, 1]);
    the metric decodes with Griffin-Lim and asks the run's bundled classifier (digit or pitch class:
    accuracy) and its Frechet distance."""
    from multidiff.adapters.audio import decode
    from multidiff.core.guidance import ClassifierFreeGuidance
    from multidiff.data.audio import fitted_clips
    from multidiff.metrics.audio import evaluate_audio, load_audio_classifier
    from multidiff.recipes.audio import load_data, load_run

    model, config = load_run(run_dir, device="cpu")
    data = load_data(config)
    spec = config.spectrogram
    labels = torch.arange(num) % data.num_classes
    guided = ClassifierFreeGuidance(model, config.guidance, torch.tensor([data.num_classes]))
    classifier, classifier_spec = load_audio_classifier(config.dataset)
    real_test = fitted_clips(data.test, data.sample_rate, classifier_spec)
    real_train = fitted_clips(data.train, data.sample_rate, classifier_spec)

    def denoiser(x, sigma):
        with torch.no_grad():
            return guided(x.float(), sigma.float(), labels).double()

    def metric(samples):
        waves = decode(samples.float().clamp(-1, 1), spec)
        m = evaluate_audio(waves, spec.sample_rate, labels, real_test, real_train, classifier_spec.sample_rate,
                           classifier, classifier_spec)
        return {"Frechet": m["frechet"], "accuracy": m["classifier_accuracy"]}

    x_T = torch.randn((num, *spec.shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return Task(denoiser, model.schedule, x_T * model.schedule.sigma_max, lambda x: x, metric, ("Frechet", "accuracy"))


TASKS = {"digits": digits_task, "toy2d": toy2d_task, "spoken_digits": audio_task, "notes": audio_task}
DEFAULT_NUM = {"digits": 300, "toy2d": 2000, "spoken_digits": 200, "notes": 200}
AUDIO_UNITS = " in model space (normalised log-mel in [-1, 1])"
UNITS = {"digits": " in pixels in [0, 1]", "spoken_digits": AUDIO_UNITS, "notes": AUDIO_UNITS}


# ---------------------------------------------------------------- samplers


def multidiff_run(task: Task, method: str, spacing: str | None, nfe: int, options: dict) -> torch.Tensor:
    steps = nfe
    while SAMPLERS[method].nfe(steps) > nfe:
        steps -= 1
    sigmas = default_sigmas(task.schedule, steps, method) if spacing is None else task.schedule.sigmas(steps, spacing)
    return sample(task.denoiser, task.x_T.clone(), sigmas, method=method, **options)


DIFFUSERS = {  # label: (class name, options)
    "EDM DPM++ 2M karras (default)": ("EDMDPMSolverMultistepScheduler", {"solver_order": 2}),
    "EDM DPM++ 3M karras": ("EDMDPMSolverMultistepScheduler", {"solver_order": 3}),
    "EDM DPM++ 2M exponential": ("EDMDPMSolverMultistepScheduler", {"solver_order": 2,
                                                                     "sigma_schedule": "exponential"}),
    "EDM DPM++ 3M exponential": ("EDMDPMSolverMultistepScheduler", {"solver_order": 3,
                                                                     "sigma_schedule": "exponential"}),
    "EDM DPM++ 3M karras, lower_order_final=False": ("EDMDPMSolverMultistepScheduler",
                                                     {"solver_order": 3, "lower_order_final": False}),
    "EDM Euler karras": ("EDMEulerScheduler", {}),
}


def diffusers_run(task: Task, label: str, nfe: int) -> torch.Tensor:
    """Drive a diffusers EDM scheduler with the same denoiser: it scales the input by
    c_in and wants an epsilon-type output F with D = c_skip x + c_out F (Karras et al.
    2022, Table 1), so F = (D - c_skip x) / c_out; its timestep is c_noise = log(sigma) / 4."""
    import diffusers

    cls_name, options = DIFFUSERS[label]
    sd, schedule = task.schedule.sigma_data, task.schedule
    sched = getattr(diffusers, cls_name)(sigma_min=schedule.sigma_min, sigma_max=schedule.sigma_max, sigma_data=sd,
                                         prediction_type="epsilon", **options)
    sched.set_timesteps(nfe)
    x = task.x_T.clone()
    for i, t in enumerate(sched.timesteps):
        sigma = float(sched.sigmas[i])
        x_in = sched.scale_model_input(x, t) * math.sqrt(sigma**2 + sd**2)
        denoised = task.denoiser(x_in, torch.full((x.shape[0],), sigma, dtype=torch.float64))
        c_skip, c_out = sd**2 / (sigma**2 + sd**2), sigma * sd / math.sqrt(sigma**2 + sd**2)
        x = sched.step((denoised - c_skip * x_in) / c_out, t, x).prev_sample
    return x.double()


# ---------------------------------------------------------------- measurement


CALIBRATION_EVALS_PER_STEP = 60
CALIBRATED_LABEL = "multidiff unipc / calibrated on its own noise"


def calibrated_runner(task: Task, reference_steps: int, seed: int, log=print) -> Callable:
    """``nfe -> samples`` for unipc on a grid from ``calibrate_sigmas``: calibrated on a batch
    of the same size from another seed (never the noise measured), against the network's own
    converged solution from that batch, starting from the default and Karras grids."""
    gen = torch.Generator().manual_seed(seed + 1)
    noise = torch.randn(task.x_T.shape, generator=gen, dtype=torch.float64) * task.schedule.sigma_max
    cal_ref = sample(task.denoiser, noise.clone(), task.schedule.sigmas(reference_steps, "karras"), method="heun")
    grids = {}

    def run(nfe: int) -> torch.Tensor:
        t0 = time.perf_counter()
        grids[nfe] = calibrate_sigmas(task.denoiser, noise, nfe, "unipc", sigma_min=task.schedule.sigma_min,
                                      sigma_max=task.schedule.sigma_max,
                                      candidates=starting_grids(task.schedule, nfe, "unipc"), reference=cal_ref,
                                      evals=CALIBRATION_EVALS_PER_STEP * nfe)
        log(f"   calibrated NFE {nfe}: " + ", ".join(f"{v:.3g}" for v in grids[nfe].tolist())
            + f" ({time.perf_counter() - t0:.0f} s)")
        return sample(task.denoiser, task.x_T.clone(), grids[nfe], method="unipc")

    run.grids = grids
    return run


def measure(task: Task, reference_steps: int, log=print, calibrate: bool = False, seed: int = 0) -> dict:
    t0 = time.perf_counter()
    ref = task.to_data(sample(task.denoiser, task.x_T.clone(), task.schedule.sigmas(reference_steps, "karras"),
                              method="heun"))
    half = task.to_data(sample(task.denoiser, task.x_T.clone(),
                               task.schedule.sigmas(reference_steps // 2, "karras"), method="heun"))
    result = {"ref_check": rms(ref, half), "rms": {}, "metric": {}, "ref_metric": task.metric(ref),
              "reference_steps": reference_steps}
    log(f"reference: heun {reference_steps} vs {reference_steps // 2} karras steps differ by {result['ref_check']:.1e} "
        f"({time.perf_counter() - t0:.0f} s)")
    runs = [(f"multidiff {m}{''.join(f' {k}={v}' for k, v in opt.items())} / {sp or SAMPLERS[m].spacing}"
             f"{' (default)' if (m, sp, opt) == (DEFAULT_METHOD, None, {}) else ''}",
             lambda n, m=m, sp=sp, opt=opt: multidiff_run(task, m, sp, n, opt)) for m, sp, opt in MULTIDIFF]
    if calibrate:
        runs.append((CALIBRATED_LABEL, calibrated_runner(task, reference_steps, seed, log)))
    runs += [(f"diffusers {label}", lambda n, label=label: diffusers_run(task, label, n)) for label in DIFFUSERS]
    for label, run in runs:
        result["rms"][label], result["metric"][label] = {}, {}
        for n in NFES:
            out = task.to_data(run(n))
            result["rms"][label][n] = rms(out, ref)
            if n in METRIC_NFES:
                result["metric"][label][n] = task.metric(out)
        log(f"{label}: " + ", ".join(f"{n}: {e:.2e}" for n, e in result["rms"][label].items())
            + f" ({time.perf_counter() - t0:.0f} s)")
    return result


def report(recipe: str, run_dir: Path, task: Task, result: dict) -> str:
    import diffusers

    labels = list(result["rms"])
    default = next(label for label in labels if label.endswith("(default)") and label.startswith("multidiff"))
    df_labels = [label for label in labels if label.startswith("diffusers")]
    steps = result["reference_steps"]
    lines = [f"Run `{run_dir.name}` ({recipe}), {task.x_T.shape[0]} starting noises; reference: `heun` on "
             f"{steps} karras steps ({steps // 2} steps differ from it by "
             f"{result['ref_check']:.1e} RMS). RMS distance to the reference"
             f"{UNITS.get(recipe, '')}; diffusers {diffusers.__version__}, "
             f"torch {torch.__version__}, {platform.machine()} CPU.", ""]
    rows = [[label] + [f"{result['rms'][label][n]:.2e}" for n in NFES] for label in labels]
    best = [min(result["rms"][label][n] for label in df_labels) for n in NFES]
    rows.append(["**default / best diffusers EDM**"] + [f"**{result['rms'][default][n] / b:.2f}**"
                                                         for n, b in zip(NFES, best)])
    lines.append(_table(["sampler / grid"] + [f"NFE {n}" for n in NFES], rows))
    lines.append("")
    errs = [result["rms"][default][n] for n in NFES]
    falls = all(b < a for a, b in zip(errs, errs[1:]))
    within = all(result["rms"][default][n] <= b for n, b in zip(NFES, best))
    lines.append(f"The default's distance falls with every NFE step: **{'yes' if falls else 'no'}**; "
                 f"at most the best diffusers EDM scheduler's at every NFE: **{'yes' if within else 'no'}**.")
    if CALIBRATED_LABEL in result["rms"]:
        cal = result["rms"][CALIBRATED_LABEL]
        lines.append("")
        lines.append(f"Calibrated grid (`calibrate_sigmas`, {CALIBRATION_EVALS_PER_STEP} x NFE runs of unipc on "
                     f"{task.x_T.shape[0]} noises of another seed against the network's own converged solution "
                     f"from them) / default grid: "
                     + ", ".join(f"NFE {n} {cal[n] / result['rms'][default][n]:.2f}" for n in NFES)
                     + "; / best diffusers EDM: "
                     + ", ".join(f"NFE {n} {cal[n] / b:.2f}" for n, b in zip(NFES, best)) + ".")
    lines.append("")
    names = task.metric_names
    ref_cells = " / ".join(f"{result['ref_metric'][k]:.3g}" for k in names)
    lines.append(f"{' / '.join(names)} of the samples (the converged reference samples: {ref_cells}):")
    lines.append("")
    rows = [[label] + [" / ".join(f"{result['metric'][label][n][k]:.3g}" for k in names) for n in METRIC_NFES]
            for label in labels]
    lines.append(_table(["sampler / grid"] + [f"NFE {n}" for n in METRIC_NFES], rows))
    lines.append("")
    return "\n".join(lines)


def _table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", choices=tuple(TASKS))
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--num", type=int, default=None, help="starting noises (digits 300, toy2d 2000, "
                                                               "spoken_digits and notes 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--calibrate", action="store_true",
                        help="add unipc on grids from calibrate_sigmas (60 x NFE runs per NFE on a batch of its own)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    task = TASKS[args.recipe](args.run_dir, args.num or DEFAULT_NUM[args.recipe], args.seed)
    block = report(args.recipe, args.run_dir, task,
                   measure(task, REFERENCE_STEPS[args.recipe], calibrate=args.calibrate, seed=args.seed))
    print(block)
    if not args.no_write:
        write_block(DOC, f"trained_samplers_{args.recipe}", block, append_if_missing=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
