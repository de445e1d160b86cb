"""Pitch: YIN f0 estimation, cents and MIDI note frequencies."""

from __future__ import annotations

import torch
from torch import Tensor


def estimate_f0(wave: Tensor, sample_rate: int, *, fmin: float = 50.0, fmax: float = 1000.0, start: float = 0.05,
                window: float = 0.2, threshold: float = 0.15) -> Tensor:
    """Fundamental frequency in Hz per clip ``(B,)`` of waveforms ``(B, T)`` with YIN (de Cheveigne &
    Kawahara 2002): over ``window`` seconds from ``start``, the cumulative-mean-normalised
    difference function d'(tau) (Eq. 8); the first lag below ``threshold`` (else the global
    minimum) is refined to its local minimum and by parabolic interpolation (Step 5). NaN for a
    silent clip. Lags cover ``[fmin, fmax]``."""
    wave = torch.as_tensor(wave, dtype=torch.float64)
    if wave.ndim == 1:
        wave = wave[None]
    tau_max = int(sample_rate / fmin)
    begin, width = int(start * sample_rate), int(window * sample_rate)
    if wave.shape[1] < begin + width + tau_max:
        raise ValueError(f"clips of {wave.shape[1]} samples are too short for f0 over [{start}, {start + window}] s "
                         f"with fmin {fmin} Hz at {sample_rate} Hz")
    frame = wave[:, begin: begin + width + tau_max]  # (B, W + tau_max)
    x = frame[:, :width]
    lags = torch.arange(1, tau_max + 1)
    # d(tau) = sum_j (x_j - x_{j + tau})^2 over j < W, from energies and a cross-correlation by FFT
    n = 1 << (width + tau_max + width).bit_length()
    cross = torch.fft.irfft(torch.fft.rfft(frame, n) * torch.fft.rfft(x, n).conj(), n)[:, 1: tau_max + 1]  # (B, tau)
    energy = frame.pow(2).cumsum(1)  # (B, W + tau_max)
    shifted = energy[:, lags + width - 1] - energy[:, lags - 1]  # sum_{j<W} x_{j+tau}^2
    d = x.pow(2).sum(1, keepdim=True) + shifted - 2 * cross  # (B, tau_max)
    cmnd = d * lags / d.cumsum(1).clamp_min(1e-12)  # d'(tau)
    tau_min = max(1, int(sample_rate / fmax))
    out = torch.full((wave.shape[0],), float("nan"), dtype=torch.float64)
    for b in range(wave.shape[0]):
        if float(x[b].abs().max()) == 0:
            continue
        curve = cmnd[b]
        below = (curve[tau_min - 1:] < threshold).nonzero().flatten()
        i = int(below[0]) + tau_min - 1 if len(below) else int(curve[tau_min - 1:].argmin()) + tau_min - 1
        while i + 1 < tau_max and curve[i + 1] < curve[i]:
            i += 1
        shift = 0.0
        if 0 < i < tau_max - 1:
            a, c, e = float(curve[i - 1]), float(curve[i]), float(curve[i + 1])
            if a - 2 * c + e > 0:
                shift = 0.5 * (a - e) / (a - 2 * c + e)
        out[b] = sample_rate / (i + 1 + shift)
    return out


def cents(f0: Tensor, target_hz: Tensor) -> Tensor:
    """The pitch error ``1200 log2(f0 / target)`` in cents (NaN where f0 is NaN)."""
    return 1200 * torch.log2(torch.as_tensor(f0, dtype=torch.float64) / torch.as_tensor(target_hz,
                                                                                     dtype=torch.float64))


def midi_to_hz(pitch) -> Tensor:
    return 440.0 * 2 ** ((torch.as_tensor(pitch, dtype=torch.float64) - 69) / 12)
