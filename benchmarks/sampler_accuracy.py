"""Sampler accuracy on an exact Gaussian-mixture denoiser: multidiff vs diffusers.

Every solver integrates the same probability-flow ODE of the DDPM linear-beta
schedule (``VPLinear``) from the same noise. The denoiser is the closed-form
E[x0 | x] of a Gaussian mixture, so the only error left is the solver's. The
error of a run is the RMS distance (over all samples and dims) between its
output and a tightly solved reference ODE solution.

Also measures per-step overhead (time outside the denoiser) of both sampling
loops with a trivially cheap denoiser.

Run from the repository root::

    python benchmarks/sampler_accuracy.py            # full run, rewrites docs/
    python benchmarks/sampler_accuracy.py --quick    # smaller run, prints only
    python benchmarks/sampler_accuracy.py --mixture-seed 3 --no-write   # another mixture, prints only
    python benchmarks/sampler_accuracy.py --families  # the sweep over mixture families (runs mixture_families.py)

Writes the tables into ``docs/results/samplers.md`` between the markers
``<!-- sampler_accuracy:start -->`` / ``<!-- sampler_accuracy:end -->`` and
the plot to ``docs/img/sampler_accuracy.png``.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import (MULTIDIFF_METHODS, DiffusersConfig, best, code_version, diffusers_configs, md_table,  # noqa: E402
                    multidiff_steps, reference_sigmas, rms, run_diffusers)
from docblock import write_block  # noqa: E402

from multidiff.core.gmm import example_mixture  # noqa: E402
from multidiff.core.samplers import SAMPLERS, sample  # noqa: E402
from multidiff.core.schedules import VPLinear  # noqa: E402

DOC = ROOT / "docs" / "results" / "samplers.md"
PLOT = ROOT / "docs" / "img" / "sampler_accuracy.png"

SPACINGS = ("logsnr_jump", "karras", "logsnr", "trailing")  # run for every sampler, besides its own default
TARGET_NFES = (5, 10, 20)  # where the 0.7x target applies
TARGET_RATIO = 0.7
CODE = "multidiff/core"  # the code these figures measure: a provenance line flags uncommitted changes in it


@dataclass
class Settings:
    dim: int = 8
    components: int = 8
    mixture_seed: int = 0
    samples: int = 4096  # the RMS is dominated by rare boundary samples: many draws keep it stable
    noise_seed: int = 1
    nfes: tuple = (5, 10, 20, 50)
    reference_steps: int = 8000
    reference_sigma_min: float = 1e-6
    held_out: tuple = ((8, 8, 1), (8, 8, 2), (8, 8, 3), (16, 8, 0))  # (dim, components, seed)
    held_out_samples: int = 1024
    held_out_reference_steps: int = 4000
    overhead_steps: int = 50
    overhead_repeats_small: int = 30
    overhead_repeats_large: int = 10


QUICK = Settings(samples=128, nfes=(5, 10, 20), reference_steps=2000, held_out=((8, 8, 1),), held_out_samples=64,
                 held_out_reference_steps=2000, overhead_repeats_small=5, overhead_repeats_large=2)


@dataclass
class Problem:
    """The shared setup: mixture, schedule, noise and the start point x_T."""

    settings: Settings
    gmm: object = field(init=False)
    schedule: VPLinear = field(init=False)
    z: torch.Tensor = field(init=False)  # (B, D), N(0, I); also x_vp at timestep 999
    x_T: torch.Tensor = field(init=False)  # (B, D), VE coordinates at sigma_max

    def __post_init__(self):
        s = self.settings
        self.gmm = example_mixture(s.dim, s.components, s.mixture_seed)
        self.schedule = VPLinear()
        gen = torch.Generator().manual_seed(s.noise_seed)
        self.z = torch.randn(s.samples, s.dim, generator=gen, dtype=torch.float64)
        self.x_T = self.z * math.sqrt(1.0 + self.sigma_max**2)

    @property
    def sigma_max(self) -> float:
        return self.schedule.sigma_max

    def counted(self, counter: list) -> Callable:
        def denoiser(x, sigma, cond=None):
            counter[0] += 1
            return self.gmm(x, sigma)
        return denoiser


def error_profile(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(median per-sample RMS error, share of the total squared error from the worst 1% of samples)."""
    per = (a - b).pow(2).reshape(a.shape[0], -1).mean(1)
    worst = per.sort(descending=True).values[: max(1, a.shape[0] // 100)]
    return per.sqrt().median().item(), (worst.sum() / per.sum()).item()


# ---------------------------------------------------------------- reference


def solve_reference(problem: Problem) -> tuple[torch.Tensor, list[dict]]:
    """The ODE solution by iPNDM (4th order) on ``reference_steps`` log-uniform
    steps, with its convergence checked against half the steps, a different
    method (DPM-Solver++ 3M) and a smaller final sigma."""
    s = problem.settings
    n = s.reference_steps
    variants = [("ipndm", n, s.reference_sigma_min), ("ipndm", n // 2, s.reference_sigma_min),
                ("dpmpp_3m", n, s.reference_sigma_min), ("ipndm", n, s.reference_sigma_min / 100)]
    runs = {(method, steps, sigma_min): sample(problem.gmm, problem.x_T,
                                               reference_sigmas(problem.sigma_max, sigma_min, steps), method=method)
            for method, steps, sigma_min in variants}
    ref = runs[variants[0]]
    checks = [{"method": m, "steps": st, "sigma_min": sm, "rms_vs_reference": rms(x, ref)}
              for (m, st, sm), x in runs.items() if (m, st, sm) != variants[0]]
    return ref, checks


def final_denoise_floor(problem: Problem, ref: torch.Tensor) -> float:
    """RMS error of the exact ODE solution at sigma(timestep 0) followed by
    x = D(x, sigma): the level at which samplers that end with that denoise
    stop improving."""
    sigma_min = problem.schedule.sigma_min
    sig = reference_sigmas(problem.sigma_max, sigma_min, problem.settings.reference_steps)[:-1]
    x_min = sample(problem.gmm, problem.x_T, sig, method="ipndm")
    denoised = problem.gmm(x_min, torch.full((x_min.shape[0],), sigma_min, dtype=torch.float64))
    return rms(denoised, ref)


# ---------------------------------------------------------------- multidiff


def spacings_for(method: str) -> tuple[str, ...]:
    """The sampler's recommended spacing first, then the common ones."""
    default = SAMPLERS[method].spacing
    return (default,) + tuple(sp for sp in SPACINGS if sp != default)


def run_multidiff(problem: Problem, method: str, spacing: str, nfe: int) -> tuple[torch.Tensor, int]:
    steps = multidiff_steps(method, nfe)
    sigmas = problem.schedule.sigmas(steps, spacing)
    counter = [0]
    out = sample(problem.counted(counter), problem.x_T.clone(), sigmas, method=method)
    return out, counter[0]


# ---------------------------------------------------------------- all accuracy runs


@dataclass
class Runs:
    """Errors (and NFE used) keyed by (sampler, spacing, nfe) for multidiff and
    by label -> {nfe: ...} for diffusers; ``df_diag`` is the diagnostic run."""

    md_err: dict = field(default_factory=dict)
    md_nfe: dict = field(default_factory=dict)
    md_out: dict = field(default_factory=dict)
    df_err: dict = field(default_factory=dict)
    df_nfe: dict = field(default_factory=dict)
    df_diag: dict = field(default_factory=dict)
    df_out: dict = field(default_factory=dict)
    df_grid: dict = field(default_factory=dict)  # diffusers update rules on multidiff's default grids
    ref: torch.Tensor | None = None  # the reference solution the errors are measured against


def accuracy_runs(problem: Problem, ref: torch.Tensor, diagnostic: bool) -> Runs:
    runs = Runs(ref=ref)
    nfes = problem.settings.nfes
    for m in MULTIDIFF_METHODS:
        for sp in spacings_for(m):
            for n in nfes:
                out, used = run_multidiff(problem, m, sp, n)
                key = (m, sp, n)
                runs.md_err[key], runs.md_nfe[key], runs.md_out[key] = rms(out, ref), used, out
    for cfg in diffusers_configs():
        runs.df_err[cfg.label], runs.df_nfe[cfg.label], runs.df_diag[cfg.label] = {}, {}, {}
        for n in nfes:
            out, used, _ = run_diffusers(problem, cfg, n, "timestep")
            if cfg.evals_per_step == 1 and used != n:
                raise RuntimeError(f"{cfg.label}: {used} model calls for NFE {n}")
            runs.df_err[cfg.label][n], runs.df_nfe[cfg.label][n] = rms(out, ref), used
            runs.df_out[(cfg.label, n)] = out
            if diagnostic:
                runs.df_diag[cfg.label][n] = rms(run_diffusers(problem, cfg, n, "scheduler")[0], ref)
    if diagnostic:
        for cfg, method in grid_swap_configs():
            label = f"{cfg.label} on multidiff's `{method}` grid ({SAMPLERS[method].spacing})"
            runs.df_grid[label] = {}
            for n in nfes:
                grid = problem.schedule.sigmas(n, SAMPLERS[method].spacing)
                out, used, _ = run_diffusers(problem, cfg, n, "scheduler", grid=grid)
                if used != n:
                    raise RuntimeError(f"{label}: {used} model calls for NFE {n}")
                runs.df_grid[label][n] = rms(out, ref)
    return runs


def grid_swap_configs() -> list[tuple[DiffusersConfig, str]]:
    """diffusers update rules paired with the multidiff sampler whose default grid they get."""
    by_label = {cfg.label: cfg for cfg in diffusers_configs()}
    return [(by_label["DPM++ 2M linspace (default)"], "dpmpp_2m"), (by_label["DPM++ 3M linspace"], "dpmpp_3m"),
            (by_label["UniPC 2 bh2 linspace (default)"], "unipc"), (by_label["UniPC 3 bh2 linspace"], "unipc"),
            (by_label["Euler linspace (default)"], "euler")]


def best_of(runs: Runs, n: int, diffusers_errors: dict | None = None):
    """((best multidiff label, error), (best diffusers label, error)) at NFE n."""
    md = best((f"{m} / {sp}", runs.md_err[(m, sp, n)]) for m in MULTIDIFF_METHODS for sp in spacings_for(m))
    errors = runs.df_err if diffusers_errors is None else diffusers_errors
    return md, best((label, errors[label][n]) for label in errors)


def held_out_runs(settings: Settings) -> list[list[str]]:
    """Best multidiff vs best diffusers on other mixtures, so that a grid tuned
    on the main mixture cannot win by fitting it."""
    rows = []
    for dim, components, seed in settings.held_out:
        problem = Problem(replace(settings, dim=dim, components=components, mixture_seed=seed,
                                  samples=settings.held_out_samples))
        steps = settings.held_out_reference_steps
        ref = sample(problem.gmm, problem.x_T, reference_sigmas(problem.sigma_max, settings.reference_sigma_min,
                                                                  steps), method="ipndm")
        runs = accuracy_runs(problem, ref, diagnostic=False)
        for n in settings.nfes:
            (bm, bm_e), (bd, bd_e) = best_of(runs, n)
            rows.append([f"dim {dim}, {components} components, seed {seed}", str(n), f"{bm} {fmt(bm_e)}",
                         f"{bd} {fmt(bd_e)}", f"{bm_e / bd_e:.2f}"])
    return rows


# ---------------------------------------------------------------- overhead


def _timed_denoiser(spent: list):
    def denoiser(x, sigma, cond=None):
        t0 = time.perf_counter()
        out = 0.5 * x
        spent[0] += time.perf_counter() - t0
        return out
    return denoiser


def overhead_us_per_step(shape, dtype, steps: int, repeats: int) -> dict:
    """Microseconds per step spent outside a denoiser that returns 0.5 * x:
    {sampler: {library: (median, min) over ``repeats`` runs}}. The two
    libraries' runs alternate so that drifts in machine load hit both."""
    import diffusers
    schedule = VPLinear()
    base = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    makers = {
        "dpmpp_2m": lambda: diffusers.DPMSolverMultistepScheduler(**base, algorithm_type="dpmsolver++",
                                                                  final_sigmas_type="zero"),
        "unipc": lambda: diffusers.UniPCMultistepScheduler(**base),
        "euler": lambda: diffusers.EulerDiscreteScheduler(**base),
    }
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(shape, generator=gen, dtype=dtype)
    sigmas = schedule.sigmas(steps, "karras")
    result = {}
    for name, make in makers.items():
        md, df = [], []
        for rep in range(repeats + 1):  # the first run warms up and is discarded
            spent = [0.0]
            denoiser = _timed_denoiser(spent)
            t0 = time.perf_counter()
            sample(denoiser, noise * sigmas[0].item(), sigmas, method=name)
            elapsed = time.perf_counter() - t0
            if rep:
                md.append((elapsed - spent[0]) / steps)

            sched = make()
            sched.set_timesteps(steps)
            spent = [0.0]
            denoiser = _timed_denoiser(spent)
            x = noise * sched.init_noise_sigma
            t0 = time.perf_counter()
            for t in sched.timesteps:
                model_in = sched.scale_model_input(x, t)
                x = sched.step(denoiser(model_in, t), t, x).prev_sample
            elapsed = time.perf_counter() - t0
            if rep:
                df.append((elapsed - spent[0]) / steps)
        result[name] = {"multidiff": (1e6 * statistics.median(md), 1e6 * min(md)),
                        "diffusers": (1e6 * statistics.median(df), 1e6 * min(df))}
    return result


# ---------------------------------------------------------------- report


def fmt(e: float) -> str:
    return f"{e:.2e}"


def geo_mean(values) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def build_report(settings, problem, ref_checks, floor, runs: Runs, held_out_rows, overhead,
                 consistency) -> tuple[str, list[str]]:
    nfes = settings.nfes
    md_err, md_nfe, df_err, df_nfe, df_diag = runs.md_err, runs.md_nfe, runs.df_err, runs.df_nfe, runs.df_diag
    lines, summary = [], []
    import diffusers

    lines.append(f"Generated by `python benchmarks/sampler_accuracy.py` ({code_version(CODE)}, "
                 f"torch {torch.__version__}, diffusers {diffusers.__version__}, Python {platform.python_version()}, "
                 f"CPU, float64).")
    lines.append("")
    lines.append(f"- Data: `example_mixture(dim={settings.dim}, num_components={settings.components}, "
                 f"seed={settings.mixture_seed})`; {settings.samples} noise draws `z ~ N(0, I)` "
                 f"(torch generator seed {settings.noise_seed}).")
    lines.append(f"- Schedule: `VPLinear()` (beta 1e-4..0.02, 1000 steps); start at timestep 999, "
                 f"sigma_max = {problem.sigma_max:.6g}, x_T = z * sqrt(1 + sigma_max^2).")
    worst = max(c["rms_vs_reference"] for c in ref_checks)
    lines.append(f"- Reference: `ipndm` (order 4), {settings.reference_steps} log-uniform steps from sigma_max "
                 f"to {settings.reference_sigma_min:g}, then 0. Self-checks (RMS distance to the reference):")
    for c in ref_checks:
        lines.append(f"  - `{c['method']}`, {c['steps']} steps, final sigma {c['sigma_min']:g}: "
                     f"{c['rms_vs_reference']:.1e}")
    lines.append(f"  The reference is good to about {worst:.0e}, far below every error reported below.")
    lines.append(f"- Final-step floor: solving the ODE exactly down to sigma(timestep 0) = "
                 f"{problem.schedule.sigma_min:.4g} and then returning D(x, sigma) leaves an RMS error of "
                 f"{floor:.2e}. Samplers whose last step is that denoise level off near this value.")
    lines.append("")

    # multidiff table
    lines.append("#### multidiff (RMS error vs reference; `*` = the sampler's default spacing)")
    lines.append("")
    rows = []
    for m in MULTIDIFF_METHODS:
        default = SAMPLERS[m].spacing
        for sp in spacings_for(m):
            label = f"{m} / {sp}{' *' if sp == default else ''}"
            nfe_used = [md_nfe[(m, sp, n)] for n in nfes]
            if nfe_used != list(nfes):
                label += f" (NFE {'/'.join(map(str, nfe_used))})"
            rows.append([label] + [fmt(md_err[(m, sp, n)]) for n in nfes])
    lines.append(md_table(["sampler / spacing"] + [f"NFE {n}" for n in nfes], rows))
    lines.append("")

    # diffusers table
    lines.append("#### diffusers (same model, same noise; model conditioned on the scheduler's timestep)")
    lines.append("")
    rows = []
    for label in df_err:
        nfe_used = [df_nfe[label][n] for n in nfes]
        name = label + (f" (NFE {'/'.join(map(str, nfe_used))})" if nfe_used != list(nfes) else "")
        rows.append([name] + [fmt(df_err[label][n]) for n in nfes])
    lines.append(md_table(["scheduler"] + [f"NFE {n}" for n in nfes], rows))
    lines.append("")

    # best vs best
    lines.append("#### Best multidiff vs best diffusers at each NFE")
    lines.append("")
    rows = []
    met_all = True
    for n in nfes:
        (bm, bm_e), (bd, bd_e) = best_of(runs, n)
        _, (bdd, bdd_e) = best_of(runs, n, df_diag)
        ratio, ratio_diag = bm_e / bd_e, bm_e / bdd_e
        if n in TARGET_NFES:
            met = ratio <= TARGET_RATIO
            met_all &= met
            verdict = "yes" if met else "**no**"
        else:
            verdict = "(not a target)"
        rows.append([str(n), f"{bm} {fmt(bm_e)}", f"{bd} {fmt(bd_e)}", f"{ratio:.2f}", verdict,
                     f"{bdd} {fmt(bdd_e)}", f"{ratio_diag:.2f}"])
        summary.append(f"NFE {n:>2}: best multidiff {bm} {fmt(bm_e)} | best diffusers {bd} {fmt(bd_e)} | "
                       f"ratio {ratio:.2f} {verdict} | vs diffusers at its own sigma {ratio_diag:.2f}")
    lines.append(md_table(["NFE", "best multidiff", "best diffusers", "ratio", f"<= {TARGET_RATIO}?",
                           "best diffusers, model at the scheduler's sigma (diagnostic)", "ratio"], rows))
    lines.append("")
    lines.append("How the error is spread over samples (the same best configurations): most samples are far more "
                 "accurate than the RMS says; a few trajectories near a boundary between modes carry most of "
                 "the squared error, which is why the comparison uses many draws.")
    lines.append("")
    rows = []
    for n in nfes:
        (bm, _), (bd, _) = best_of(runs, n)
        m, sp = (part.strip() for part in bm.split("/"))
        md_med, md_top = error_profile(runs.md_out[(m, sp, n)], runs.ref)
        df_med, df_top = error_profile(runs.df_out[(bd, n)], runs.ref)
        rows.append([str(n), f"{fmt(md_med)} / {md_top:.0%}", f"{fmt(df_med)} / {df_top:.0%}"])
    lines.append(md_table(["NFE", "best multidiff: median error / worst-1% share",
                           "best diffusers: median error / worst-1% share"], rows))
    lines.append("")
    verdict = "met" if met_all else "NOT met"
    lines.append(f"Target (best multidiff error <= {TARGET_RATIO} x best diffusers error at NFE "
                 f"{', '.join(map(str, TARGET_NFES))}): **{verdict}**.")
    summary.append(f"0.7x target at NFE {TARGET_NFES}: {verdict}")
    lines.append("")

    # held-out mixtures
    lines.append("#### Held-out mixtures")
    lines.append("")
    lines.append(f"The same comparison on other mixtures ({settings.held_out_samples} samples, reference "
                 f"`ipndm` with {settings.held_out_reference_steps} steps), so that a spacing tuned on the main "
                 f"mixture cannot win by fitting it.")
    lines.append("")
    lines.append(md_table(["mixture", "NFE", "best multidiff", "best diffusers", "ratio"], held_out_rows))
    lines.append("")
    for n in TARGET_NFES:
        ratios = [float(r[4]) for r in held_out_rows if r[1] == str(n)]
        if ratios:
            summary.append(f"held-out NFE {n:>2}: ratios {', '.join(f'{r:.2f}' for r in ratios)}")

    # best spacing per multidiff sampler
    lines.append("#### Best spacing per multidiff sampler")
    lines.append("")
    rows = []
    for m in MULTIDIFF_METHODS:
        per_nfe = [min(spacings_for(m), key=lambda sp: md_err[(m, sp, n)]) for n in nfes]
        overall = min(spacings_for(m), key=lambda sp: geo_mean([md_err[(m, sp, n)] for n in nfes]))
        rows.append([m, SAMPLERS[m].spacing, overall] + per_nfe)
        summary.append(f"best spacing {m:>9}: overall {overall:8} (default {SAMPLERS[m].spacing}); "
                       f"per NFE {dict(zip(nfes, per_nfe))}")
    lines.append(md_table(["sampler", "default", "best (geometric mean over NFE)"] + [f"NFE {n}" for n in nfes],
                          rows))
    lines.append("")

    # diagnostic table
    lines.append("#### Diagnostic: diffusers with the model evaluated at the scheduler's own sigma")
    lines.append("")
    lines.append("Same runs, but the model ignores the (rounded or linearly interpolated) timestep and uses "
                 "the sigma the scheduler's update assumes for that call. The gap to the diffusers table "
                 "is the cost of timestep conditioning.")
    lines.append("")
    rows = [[label] + [fmt(df_diag[label][n]) for n in nfes] for label in df_diag]
    lines.append(md_table(["scheduler"] + [f"NFE {n}" for n in nfes], rows))
    lines.append("")
    lines.append("#### Diagnostic: diffusers' update rules on multidiff's default grids")
    lines.append("")
    lines.append("Where the difference comes from: each diffusers scheduler below runs on the sigma grid that "
                 "the named multidiff sampler uses by default (Euler through `set_timesteps(sigmas=...)`; "
                 "DPM-Solver and UniPC by overwriting `sigmas`/`timesteps` after `set_timesteps`), with the model "
                 "evaluated at the scheduler's sigma. These are not stock diffusers configurations and are left "
                 "out of the best-diffusers column above.")
    lines.append("")
    rows = [[label] + [fmt(runs.df_grid[label][n]) for n in nfes] for label in runs.df_grid]
    lines.append(md_table(["diffusers scheduler on a multidiff grid"] + [f"NFE {n}" for n in nfes], rows))
    lines.append("")
    ratios = []
    for n in nfes:
        (bm, bm_e), (bg, bg_e) = best_of(runs, n, runs.df_grid)
        ratios.append(f"NFE {n}: {bm_e / bg_e:.2f}")
    lines.append("Best multidiff / best of these: " + ", ".join(ratios) + ".")
    summary.append("best multidiff / best diffusers-on-multidiff-grid: " + ", ".join(ratios))
    lines.append("")
    lines.append(f"Harness consistency: multidiff `ddim / trailing` and diffusers `DDIM trailing` are the same "
                 f"method on the same timesteps; their outputs differ by at most {consistency:.1e} RMS "
                 f"(float32 `alphas_cumprod` inside diffusers).")
    lines.append("")

    # overhead
    lines.append("#### Per-step overhead (microseconds per step outside the denoiser: median (min))")
    lines.append("")
    rows = []
    for name in ("dpmpp_2m", "unipc", "euler"):
        row = [name]
        for key in overhead:
            for lib in ("multidiff", "diffusers"):
                med, low = overhead[key][name][lib]
                row.append(f"{med:.0f} ({low:.0f})")
        rows.append(row)
        summary.append(f"overhead {name:>8}: " + "; ".join(
            f"{key}: multidiff {overhead[key][name]['multidiff'][0]:.0f} us, "
            f"diffusers {overhead[key][name]['diffusers'][0]:.0f} us" for key in overhead))
    header = ["sampler"]
    for key in overhead:
        header += [f"multidiff {key}", f"diffusers {key}"]
    lines.append(md_table(header, rows))
    lines.append("")
    lines.append(f"{settings.overhead_steps}-step float32 runs; denoiser `0.5 * x`; median and minimum over "
                 f"{settings.overhead_repeats_small} (small batch) / {settings.overhead_repeats_large} (large batch) "
                 f"runs after one warm-up; {torch.get_num_threads()} torch thread(s), {platform.machine()} CPU. "
                 f"diffusers schedulers: DPMSolverMultistep (dpmsolver++), UniPCMultistep, EulerDiscrete.")
    lines.append("")
    lines.append("![error vs NFE](../img/sampler_accuracy.png)")
    return "\n".join(lines), summary


def write_doc(block: str) -> None:
    write_block(DOC, "sampler_accuracy", block + "\n", append_if_missing=True)


PLOT_PANELS = (  # (title, multidiff samplers, diffusers label prefixes)
    ("Euler / DDIM (multidiff ddim = euler)", ("euler",), ("DDIM", "Euler")),
    ("Heun (2 NFE per step)", ("heun",), ("Heun",)),
    ("DPM-Solver++ 2M / 3M", ("dpmpp_2m", "dpmpp_3m"), ("DPM++",)),
    ("UniPC, iPNDM", ("unipc", "ipndm"), ("UniPC",)),
)


def plot(settings, runs: Runs, path: Path) -> None:
    """Error vs NFE, log-log, one line per configuration at the NFE it really
    used: multidiff solid, diffusers dashed, one panel per method family."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    nfes = settings.nfes
    md_err, md_nfe, df_err, df_nfe = runs.md_err, runs.md_nfe, runs.df_err, runs.df_nfe
    fig, axes = plt.subplots(2, 2, figsize=(14, 11), sharey=True)
    for ax, (title, methods, prefixes) in zip(axes.flat, PLOT_PANELS):
        lines = [(f"multidiff {m} / {sp}", "-", [md_nfe[(m, sp, n)] for n in nfes], [md_err[(m, sp, n)] for n in nfes])
                 for m in methods for sp in spacings_for(m)]
        lines += [(f"diffusers {label}", "--", [df_nfe[label][n] for n in nfes], [df_err[label][n] for n in nfes])
                  for label in df_err if label.startswith(prefixes)]
        colors = plt.get_cmap("tab20" if len(lines) > 10 else "tab10").colors
        for i, (label, style, x, y) in enumerate(lines):
            ax.loglog(x, y, style, marker="o" if style == "-" else "x", ms=4, lw=1.4, color=colors[i % len(colors)],
                      label=label)
        ax.set_title(title)
        ax.set_xticks(nfes)
        ax.set_xticklabels([str(n) for n in nfes])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    for ax in axes[1]:
        ax.set_xlabel("NFE (denoiser calls)")
    for ax in axes[:, 0]:
        ax.set_ylabel("RMS error vs reference ODE solution")
    fig.suptitle(f"Probability-flow ODE, {settings.components}-component Gaussian mixture in {settings.dim}-D, "
                 f"VPLinear schedule, {settings.samples} samples (multidiff solid, diffusers dashed)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def families_main(quick: bool, no_write: bool) -> int:
    """The sweep over mixture families: ``mixture_families.py --block``, which writes its own docs block."""
    import subprocess

    command = [sys.executable, str(Path(__file__).resolve().parent / "mixture_families.py"), "--block"]
    return subprocess.run(command + ["--quick"] * quick + ["--no-write"] * no_write).returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller run; prints only, writes no files")
    parser.add_argument("--no-write", action="store_true", help="full run, but do not touch docs/")
    parser.add_argument("--mixture-seed", type=int, default=None,
                        help="another example_mixture seed (a held-out check; prints only)")
    parser.add_argument("--dim", type=int, default=None, help="another data dimension (prints only)")
    parser.add_argument("--families", action="store_true",
                        help="only the sweep over mixture families; rewrites its block unless --quick/--no-write")
    args = parser.parse_args(argv)
    if args.families:
        return families_main(args.quick, args.no_write)
    try:
        import diffusers  # noqa: F401
    except ImportError:
        print("this benchmark needs diffusers: pip install 'multidiff[reference]'", file=sys.stderr)
        return 1
    settings = QUICK if args.quick else Settings()
    held_out = {k: v for k, v in (("mixture_seed", args.mixture_seed), ("dim", args.dim)) if v is not None}
    settings = replace(settings, **held_out)
    # one thread: on small shared CPUs a second intra-op thread made large elementwise ops several times
    # slower and the timings noisy; it also makes the accuracy runs reproducible bit for bit
    torch.set_num_threads(1)
    write = not (args.quick or args.no_write or held_out)
    t_start = time.perf_counter()
    problem = Problem(settings)

    ref, ref_checks = solve_reference(problem)
    floor = final_denoise_floor(problem, ref)
    print(f"reference done ({time.perf_counter() - t_start:.0f} s); self-checks: "
          + ", ".join(f"{c['method']}/{c['steps']}/{c['sigma_min']:g}: {c['rms_vs_reference']:.1e}"
                      for c in ref_checks))

    runs = accuracy_runs(problem, ref, diagnostic=True)
    consistency = max(rms(runs.df_out[("DDIM trailing", n)], runs.md_out[("ddim", "trailing", n)])
                      for n in settings.nfes)
    print(f"accuracy runs done ({time.perf_counter() - t_start:.0f} s)")

    held_out_rows = held_out_runs(settings)
    print(f"held-out mixtures done ({time.perf_counter() - t_start:.0f} s)")

    overhead = {
        "(16, 8)": overhead_us_per_step((16, 8), torch.float32, settings.overhead_steps,
                                        settings.overhead_repeats_small),
        "(64, 3, 64, 64)": overhead_us_per_step((64, 3, 64, 64), torch.float32, settings.overhead_steps,
                                                settings.overhead_repeats_large),
    }
    print(f"overhead runs done ({time.perf_counter() - t_start:.0f} s)")

    block, summary = build_report(settings, problem, ref_checks, floor, runs, held_out_rows, overhead, consistency)
    if write:
        write_doc(block)
        plot(settings, runs, PLOT)
        print(f"wrote {DOC.relative_to(ROOT)} and {PLOT.relative_to(ROOT)}")
    else:
        print(block)
    print("\n".join(summary))
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
