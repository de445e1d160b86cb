"""Multistep ODE/SDE solvers that reuse past denoiser outputs (1 NFE per step).

In lambda = -log sigma the probability-flow ODE is dx/dlambda = D - x, so one
step of size h is exactly

    x_next = exp(-h) x + integral_0^h exp(-(h - v)) D(lambda + v) dv.

Exponential integrators (DPM-Solver++, UniPC) replace D by a polynomial
through past outputs; Adams methods (iPNDM) integrate dx/dsigma = d(sigma) in
sigma instead. Here both integrate the Lagrange interpolant *exactly*
(:func:`lagrange_weights`), so uneven steps need no special formulas.

The step to sigma = 0 (lambda = inf) of an exponential integrator is x = D.
"""

from __future__ import annotations

import math

from ..utils import randn_like
from .base import Stepper, adams_step, combine, exp_moments, lagrange_weights, to_d


def dpmpp_2m(denoiser, x, sigmas, *, final_step: str = "auto", cond=None, callback=None):
    """DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2), written in sigma; the step
    to sigma = 0 is ``final_step`` (see :func:`_final_step`: "auto", "adams"
    or the paper's "denoise")."""
    _check_final_step(final_step)
    run = Stepper(denoiser, x, sigmas, cond, callback)
    s = run.sigma_list
    prev = None  # (denoised, h) of the previous step
    eps_history = []
    for i in range(len(run)):
        denoised = run.denoise(x, run.x_sigmas[i])
        run.report(i, x, denoised)
        eps_history.insert(0, (s[i], to_d(x, s[i], denoised)))
        del eps_history[FINAL_ORDER:]
        if s[i + 1] == 0:
            x = _final_step(x, denoised, s[i], eps_history, final_step)
            continue
        h = math.log(s[i] / s[i + 1])
        phi_1 = -math.expm1(-h)
        if prev is None:
            x = combine(x, s[i + 1] / s[i], [(phi_1, denoised)])
        else:  # D_hat = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}
            half_inv_r = h / (2 * prev[1])
            x = combine(x, s[i + 1] / s[i], [(phi_1 * (1 + half_inv_r), denoised), (-phi_1 * half_inv_r, prev[0])])
        prev = (denoised, h)
    return x


def dpmpp_2m_sde(denoiser, x, sigmas, *, eta: float = 1.0, s_noise: float = 1.0, solver: str = "midpoint",
                 cond=None, callback=None, generator=None):
    """SDE-DPM-Solver++(2M) (Lu et al. 2022b, Sec. 5): the exponential
    integrator of the reverse SDE; eta = 0 is the ODE, eta = 1 the full SDE."""
    if solver not in ("midpoint", "heun"):
        raise ValueError(f"solver must be 'midpoint' or 'heun', got {solver!r}")
    run = Stepper(denoiser, x, sigmas, cond, callback)
    s = run.sigma_list
    prev = None
    for i in range(len(run)):
        denoised = run.denoise(x, run.x_sigmas[i])
        run.report(i, x, denoised)
        if s[i + 1] == 0:
            x = denoised
            continue
        h = math.log(s[i] / s[i + 1])
        h_eta = h * (1 + eta)
        phi_1 = -math.expm1(-h_eta)
        x = (s[i + 1] / s[i]) * math.exp(-eta * h) * x + phi_1 * denoised
        if prev is not None:
            r = prev[1] / h
            # the linear term of D: midpoint rule, or its exact integral (h * phi_2)
            coeff = 0.5 * phi_1 if solver == "midpoint" else 1 - phi_1 / h_eta
            x = x + coeff * (denoised - prev[0]) / r
        if eta > 0:
            x = x + randn_like(x, generator) * s[i + 1] * math.sqrt(-math.expm1(-2 * eta * h)) * s_noise
        prev = (denoised, h)
    return x


def _moments(h: float, n_nodes: int, variant: str) -> list[float]:
    """Kernel moments for ``n_nodes`` nodes. ``"bh2"``: with two nodes the
    first-difference term gets UniPC's B(h) = e^h - 1 coefficient (Zhao et al.
    2023, Sec. 3.1; for order 2 this is DPM-Solver++(2M)'s 1/(2r) rule) in
    place of the exact moment I_1 = h - I_0 (about h^2 / 2 - h^3 / 6), which
    makes it h I_0 / 2 (about h^2 / 2 - h^3 / 4); ``"bh1"``: B(h) = h, which
    makes it h^2 / 2. Larger systems are solved exactly, where B(h) cancels.
    ``"dpmsolver"``: bh2's with two nodes, and with three the second moment of
    DPM-Solver++(3M)'s code, h^2 (1/2 - phi_2 / h) with phi_2 = 1 - I_0 / h
    (about h^3 / 6; the exact one is about h^3 / 3)."""
    moments = exp_moments(h, n_nodes)
    if variant in ("bh2", "dpmsolver") and n_nodes == 2:
        moments[1] = 0.5 * h * moments[0]
    if variant == "bh1" and n_nodes == 2:
        moments[1] = 0.5 * h * h
    if variant == "dpmsolver" and n_nodes == 3:
        moments[2] = 0.5 * h * h - h + moments[0]
    return moments


FINAL_ORDER = 3
# final_step="auto" denoises from a last sigma below this (data of about unit scale, as every recipe's)
FINAL_DENOISE_BELOW = 0.005
FINAL_STEPS = ("auto", "adams", "denoise")


def _final_step(x, denoised, sigma: float, eps_history, final_step: str):
    """The step sigma -> 0. lambda = inf there, so exponential integrators
    fall back to x = D (``"denoise"``: first order, an error floor growing
    with sigma^2). ``"adams"`` integrates dx/dsigma = eps_hat in sigma with the
    last ``FINAL_ORDER`` eps_hat values instead (no extra NFE).

    ``"auto"`` (the default) takes ``"adams"`` unless ``sigma`` is below
    FINAL_DENOISE_BELOW, where it denoises: for data of about unit scale the
    denoise step's bias, of relative order sigma^2, is negligible there, while
    eps_hat = (x - D) / sigma of a trained network, barely trained at such
    sigmas (EDM's default log-normal puts sigma 0.005 3.4 deviations below
    its mean), carries D's error times 1 / sigma into the extrapolation. On the
    trained networks of docs/benchmarks.md, whose grids end at EDM's
    sigma_min = 0.002 from about 37 steps on, "adams" left an error floor near
    1e-3 (on digits it grew from 48 to 96 steps); "denoise" kept converging.
    Grids that end higher (every recipe's default step count, the mixture
    benchmarks' schedule, whose sigma_min is 0.01) keep "adams". Data of
    another scale: pass ``final_step`` explicitly."""
    if _denoises(final_step, sigma):
        return denoised
    return adams_step(x, sigma, 0.0, eps_history[:FINAL_ORDER])


def _denoises(final_step: str, sigma: float) -> bool:
    """Whether the step from the last ``sigma`` to 0 is x = D under ``final_step``."""
    return final_step == "denoise" or (final_step == "auto" and sigma < FINAL_DENOISE_BELOW)


def _check_final_step(final_step: str) -> None:
    if final_step not in FINAL_STEPS:
        raise ValueError(f"final_step must be one of {', '.join(map(repr, FINAL_STEPS))}, got {final_step!r}")


def _exp_multistep(run: Stepper, x, order: int, corrector: bool, variant: str, final_step: str,
                   lower_order_final: bool = False):
    """Exponential multistep in lambda with exact Lagrange weights; optional
    UniC corrector (Zhao et al. 2023), which re-integrates the last step with
    the newly computed D as an extra node: one order more, no extra NFE.
    ``lower_order_final``: the predictor of step i (of n) uses at most n - i
    past outputs, as diffusers' UniPCMultistepScheduler(lower_order_final=True)
    does (on a grid ending in 0 the last step is :func:`_final_step` instead);
    the corrector of a step uses the nodes its predictor used, plus the new
    output."""
    s = run.sigma_list
    history = []  # (lambda, denoised), newest first
    eps_history = []  # (sigma, eps_hat), newest first, for the final step
    x_prev = h_prev = past = None  # the previous step's start, size and the outputs its predictor used
    for i in range(len(run)):
        denoised = run.denoise(x, run.x_sigmas[i])
        lam = -math.log(s[i])
        if corrector and x_prev is not None:
            nodes = [0.0] + [l_m - lam for l_m, _ in past]  # relative to the new point
            nodes = [v + h_prev for v in nodes]  # relative to the previous point
            w = lagrange_weights(nodes, _moments(h_prev, len(nodes), variant))
            x = combine(x_prev, math.exp(-h_prev), zip(w, [denoised] + [d for _, d in past]))
        run.report(i, x, denoised)
        history.insert(0, (lam, denoised))
        del history[order:]
        eps_history.insert(0, (s[i], to_d(x, s[i], denoised)))
        del eps_history[FINAL_ORDER:]
        if s[i + 1] == 0:
            return _final_step(x, denoised, s[i], eps_history, final_step)
        h = math.log(s[i] / s[i + 1])
        past = history[:len(run) - i] if lower_order_final else list(history)
        nodes = [l_m - lam for l_m, _ in past]
        w = lagrange_weights(nodes, _moments(h, len(nodes), variant))
        x_prev, h_prev = x, h
        x = combine(x, math.exp(-h), ((w_m, d_m) for w_m, (_, d_m) in zip(w, past)))
    return x


DPMPP_3M_VARIANTS = ("exact", "dpmsolver")


def dpmpp_3m(denoiser, x, sigmas, *, variant: str = "exact", final_step: str = "auto", cond=None, callback=None):
    """Third-order multistep DPM-Solver++ (Lu et al. 2022b, Sec. 4). ``variant="exact"``
    (the default) integrates the quadratic interpolant of the last three data
    predictions exactly; ``"dpmsolver"`` is the update of the DPM-Solver++
    code base, diffusers' DPMSolverMultistepScheduler(solver_order=3) and
    k-diffusion: its second step is DPM-Solver++(2M)'s, and from the third it
    weighs the interpolant's quadratic term with 1/2 - phi_2 / h ~ h / 6
    where the exact integral has ~ h / 3 (:func:`_moments`). So its steps are off by O(h^3)
    and it converges at order 2, not 3 (tests/test_core_samplers.py); at a
    few steps either can be the closer (docs/benchmarks.md)."""
    _check_final_step(final_step)
    if variant not in DPMPP_3M_VARIANTS:
        raise ValueError(f"dpmpp_3m variant must be one of {', '.join(map(repr, DPMPP_3M_VARIANTS))}, "
                         f"got {variant!r}")
    run = Stepper(denoiser, x, sigmas, cond, callback)
    return _exp_multistep(run, x, order=3, corrector=False, variant=variant, final_step=final_step)


# From this many steps on, unipc's default predictor order is 3 instead of 2 (docs/benchmarks.md).
UNIPC_ORDER3_STEPS = 48


UNIPC_VARIANTS = ("bh2", "bh1", "exact")


def unipc(denoiser, x, sigmas, *, order: int | None = None, variant: str = "bh2", lower_order_final: bool = False,
          final_step: str = "auto", cond=None, callback=None):
    """UniPC (Zhao et al. 2023): order-``order`` UniP predictor plus the UniC
    corrector. ``variant="bh2"`` is the paper's B(h) = e^h - 1 choice, ``"bh1"``
    its B(h) = h (:func:`_moments`); ``"exact"`` integrates every Lagrange
    interpolant exactly. ``lower_order_final=True`` lowers the order of the
    last steps as diffusers' scheduler does by default (:func:`_exp_multistep`;
    with it, ``variant``, ``order`` and a grid ending at the scheduler's last
    sigma, this is UniPCMultistepScheduler step for step, a reference test).
    Off by default: measured on the mixture families and trained networks of
    docs/benchmarks.md it helps some and hurts others. ``order=None``:
    2 for fewer than UNIPC_ORDER3_STEPS steps, 3 from there (the paper's advice,
    Sec. 4: order 2 for guided sampling with few steps; with many steps order 3
    was more accurate on the trained networks of docs/benchmarks.md)."""
    if order is None:
        order = 2 if len(sigmas) - 1 < UNIPC_ORDER3_STEPS else 3
    if order not in (1, 2, 3):
        raise ValueError(f"unipc order must be 1, 2 or 3, got {order}")
    if variant not in UNIPC_VARIANTS:
        raise ValueError(f"unipc variant must be one of {', '.join(map(repr, UNIPC_VARIANTS))}, got {variant!r}")
    _check_final_step(final_step)
    run = Stepper(denoiser, x, sigmas, cond, callback)
    return _exp_multistep(run, x, order=order, corrector=True, variant=variant, final_step=final_step,
                          lower_order_final=lower_order_final)


def ipndm(denoiser, x, sigmas, *, order: int = 4, final_step: str = "auto", cond=None, callback=None):
    """Improved PNDM (Zhang & Chen 2023, Sec. 4): Adams-Bashforth on
    dx/dsigma = (x - D) / sigma with up to ``order`` past derivatives, in its
    variable-step form (Zhou et al. 2024) via exact Lagrange weights. The step
    to sigma = 0 is ``final_step``: "adams" (the same Adams-Bashforth step),
    "denoise" (x = D) or "auto", which denoises from a last sigma below
    FINAL_DENOISE_BELOW (see :func:`_final_step`; on the trained digits network
    on Karras's grid, Adams 9.4e-4 / 1.4e-3 at 48 / 96 steps, denoise 5.2e-4 /
    6.7e-5)."""
    if order not in (1, 2, 3, 4):
        raise ValueError(f"ipndm order must be 1..4, got {order}")
    _check_final_step(final_step)
    run = Stepper(denoiser, x, sigmas, cond, callback)
    s = run.sigma_list
    history = []  # (sigma, d), newest first
    for i in range(len(run)):
        denoised = run.denoise(x, run.x_sigmas[i])
        run.report(i, x, denoised)
        history.insert(0, (s[i], to_d(x, s[i], denoised)))
        del history[order:]
        if s[i + 1] == 0 and _denoises(final_step, s[i]):
            return denoised
        x = adams_step(x, s[i], s[i + 1], history)
    return x
