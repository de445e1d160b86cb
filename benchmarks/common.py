"""What the benchmark scripts share, so that no script imports another.

- :func:`threads_and_machine`, :func:`code_version`: the provenance line of a generated block;
- :func:`rms`, :func:`best`, :func:`md_table`: errors and tables;
- the sampler comparison against diffusers on an exact Gaussian-mixture model
  (``sampler_accuracy.py`` and ``mixture_families.py``): the multidiff samplers compared,
  their step count for an NFE, the log-uniform reference grid, and the stock diffusers
  configurations with the loop that drives them (:func:`run_diffusers`).

torch, diffusers and multidiff are imported inside the functions that need them, so a script
that only wants the provenance line starts without them. Writing a generated block into a docs
page is ``docblock.write_block``.
"""

from __future__ import annotations

import math
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- provenance


def threads_and_machine(threads: int) -> str:
    """``"1 thread, x86_64"``: what a block's figures were measured on."""
    return f"{threads} thread{'s' if threads != 1 else ''}, {platform.processor() or platform.machine()}"


def code_version(*watched: str) -> str:
    """The multidiff commit the figures come from, flagged when the ``watched`` folders (e.g.
    ``"multidiff/core"``) have uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *watched], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "multidiff (not a git checkout)"
    return f"multidiff {commit}" + (f" with uncommitted changes in {', '.join(watched)}" if dirty else "")


# ---------------------------------------------------------------- errors and tables


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).pow(2).mean().sqrt().item()


def best(items):
    """(label, error) with the smallest error; NaN counts as worst."""
    return min(items, key=lambda kv: (math.isnan(kv[1]), kv[1]))


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


# ---------------------------------------------------------------- the sampler comparison

MULTIDIFF_METHODS = ("euler", "ddim", "heun", "dpmpp_2m", "dpmpp_3m", "unipc", "ipndm")


def reference_sigmas(sigma_max: float, sigma_min: float, steps: int) -> torch.Tensor:
    """``steps`` log-uniform sigmas from sigma_max to sigma_min, then 0."""
    import torch

    sig = torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), steps, dtype=torch.float64))
    return torch.cat([sig, sig.new_zeros(1)])


def multidiff_steps(method: str, nfe: int) -> int:
    """Largest step count whose NFE does not exceed the target."""
    from multidiff.core.samplers import SAMPLERS

    steps = nfe
    while SAMPLERS[method].nfe(steps) > nfe:
        steps -= 1
    return steps


@dataclass
class DiffusersConfig:
    label: str
    cls_name: str
    kwargs: dict
    coords: str  # "vp": the sample is x_vp; "ve": the sample is x_ve (scale_model_input -> x_vp)
    evals_per_step: int = 1  # Heun: 2 (minus one at the end)

    def steps_for(self, nfe: int) -> int:
        return nfe if self.evals_per_step == 1 else (nfe + 1) // 2

    def make(self):
        import diffusers
        base = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                    prediction_type="epsilon")
        return getattr(diffusers, self.cls_name)(**base, **self.kwargs)


def diffusers_configs() -> list[DiffusersConfig]:
    ddim = dict(clip_sample=False, set_alpha_to_one=True)
    dpm = dict(algorithm_type="dpmsolver++", final_sigmas_type="zero")
    cfgs = [
        DiffusersConfig("DDIM leading (default)", "DDIMScheduler", {**ddim, "timestep_spacing": "leading"}, "vp"),
        DiffusersConfig("DDIM trailing", "DDIMScheduler", {**ddim, "timestep_spacing": "trailing"}, "vp"),
        DiffusersConfig("DDIM linspace", "DDIMScheduler", {**ddim, "timestep_spacing": "linspace"}, "vp"),
    ]
    sigma_options = {"": {}, " karras": {"use_karras_sigmas": True},
                     " exponential": {"use_exponential_sigmas": True}}
    for order in (2, 3):
        for name, opts in sigma_options.items():
            default = " (default)" if not name and order == 2 else ""
            cfgs.append(DiffusersConfig(f"DPM++ {order}M{name or ' linspace'}{default}", "DPMSolverMultistepScheduler",
                                        {**dpm, "solver_order": order, **opts}, "vp"))
        cfgs.append(DiffusersConfig(f"DPM++ {order}M lu_lambdas", "DPMSolverMultistepScheduler",
                                    {**dpm, "solver_order": order, "use_lu_lambdas": True}, "vp"))
    # diffusers lowers the order of the last steps when there are fewer than 15; this row shows what that buys
    cfgs.append(DiffusersConfig("DPM++ 3M karras, lower_order_final=False", "DPMSolverMultistepScheduler",
                                {**dpm, "solver_order": 3, "use_karras_sigmas": True, "lower_order_final": False},
                                "vp"))
    for order in (2, 3):
        for name, opts in sigma_options.items():
            default = " (default)" if not name and order == 2 else ""
            cfgs.append(DiffusersConfig(f"UniPC {order} bh2{name or ' linspace'}{default}", "UniPCMultistepScheduler",
                                        {"solver_order": order, **opts}, "vp"))
    cfgs += [
        # bh1 with the default final_sigmas_type="zero" returns NaN on the last step (B_h = -inf times 0),
        # so it ends at sigma_min instead and its output is x_vp at timestep 0
        DiffusersConfig("UniPC 3 bh1 (final sigma_min)", "UniPCMultistepScheduler",
                        {"solver_order": 3, "solver_type": "bh1", "final_sigmas_type": "sigma_min"}, "vp"),
        DiffusersConfig("Euler linspace (default)", "EulerDiscreteScheduler", {}, "ve"),
        DiffusersConfig("Euler trailing", "EulerDiscreteScheduler", {"timestep_spacing": "trailing"}, "ve"),
        DiffusersConfig("Euler leading", "EulerDiscreteScheduler", {"timestep_spacing": "leading"}, "ve"),
        DiffusersConfig("Euler karras", "EulerDiscreteScheduler", {"use_karras_sigmas": True}, "ve"),
        DiffusersConfig("Heun linspace (default)", "HeunDiscreteScheduler", {}, "ve", 2),
        DiffusersConfig("Heun trailing", "HeunDiscreteScheduler", {"timestep_spacing": "trailing"}, "ve", 2),
        DiffusersConfig("Heun karras", "HeunDiscreteScheduler", {"use_karras_sigmas": True}, "ve", 2),
    ]
    return cfgs


def scheduler_sigma(sched, call_index: int, timestep) -> float:
    """The sigma the scheduler itself assumes for its ``call_index``-th model call."""
    if type(sched).__name__ == "DDIMScheduler":
        ab = sched.alphas_cumprod[int(timestep)].double()
        return float(((1 - ab) / ab).sqrt())
    return float(sched.sigmas[call_index])


def run_diffusers(problem, cfg: DiffusersConfig, nfe: int, model_sigma: str = "timestep",
                  grid: torch.Tensor | None = None):
    """Drive a diffusers scheduler with the exact model; returns (x0, NFE, sched).

    ``problem`` holds the mixture ``gmm``, the ``schedule`` (``VPLinear``) and the noise ``z``
    ``(B, D)``. The model takes (sample, timestep) in the scheduler's coordinates and
    returns epsilon. ``model_sigma="timestep"`` (what a timestep-conditioned
    network sees): sigma = VPLinear().sigma_at(timestep), fractional timesteps
    interpolated in log sigma. ``"scheduler"`` (diagnostic): sigma is the one
    the scheduler uses for that call, so timestep rounding plays no part.

    ``grid`` (diagnostic, float64 sigmas ending in 0) replaces the scheduler's
    own sigmas: through ``set_timesteps(sigmas=...)`` where diffusers offers it
    (Euler), otherwise by overwriting ``sigmas`` and ``timesteps`` after
    ``set_timesteps`` (DPM-Solver, UniPC)."""
    import torch

    sched = cfg.make()
    vp = problem.schedule
    if grid is not None and cfg.cls_name == "EulerDiscreteScheduler":
        sched.set_timesteps(sigmas=grid.tolist())
    else:
        sched.set_timesteps(cfg.steps_for(nfe))
    if grid is not None and cfg.cls_name != "EulerDiscreteScheduler":
        sched.sigmas = grid.to(torch.float32)
        sched.timesteps = vp.timestep(grid[:-1]).round().to(sched.timesteps.dtype)
        sched.num_inference_steps = len(sched.timesteps)
    calls = [0]

    def eps_model(x_vp, timestep):
        if model_sigma == "timestep":
            sigma = float(vp.sigma_at(torch.as_tensor(timestep, dtype=torch.float64)))
        else:
            sigma = scheduler_sigma(sched, calls[0], timestep)
        calls[0] += 1
        x_ve = x_vp * math.sqrt(1.0 + sigma**2)
        denoised = problem.gmm(x_ve, torch.full((x_ve.shape[0],), sigma, dtype=torch.float64))
        return (x_ve - denoised) / sigma

    # z is x_vp at the first timestep, the point every diffusers pipeline starts from
    first_sigma = float(vp.sigma_at(sched.timesteps[0].double()))
    x = problem.z.clone() if cfg.coords == "vp" else problem.z * math.sqrt(1.0 + first_sigma**2)
    for t in sched.timesteps:
        model_in = sched.scale_model_input(x, t)
        x = sched.step(eps_model(model_in, t), t, x).prev_sample
    return x.to(torch.float64), calls[0], sched
