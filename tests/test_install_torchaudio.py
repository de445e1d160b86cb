"""The pinned torch/torchaudio pair imports and computes: an install that breaks it
(e.g. torchaudio 2.11.1 on torch 2.11.0, an undefined symbol at import) fails here."""

import math

import torch


def test_torchaudio_imports_and_round_trips_a_tone():
    import torchaudio

    sample_rate, n_fft, hop = 8000, 256, 64
    t = torch.arange(sample_rate // 2) / sample_rate
    tone = torch.sin(2 * math.pi * 500.0 * t)  # 500 Hz sits exactly on STFT bin 500 / (8000 / 256) = 16
    magnitude = torchaudio.transforms.Spectrogram(n_fft=n_fft, hop_length=hop, power=1.0)(tone)  # (129, frames)
    assert int(magnitude.mean(1).argmax()) == 16
    torch.manual_seed(0)  # GriffinLim starts from random phases drawn from the global RNG
    rebuilt = torchaudio.transforms.GriffinLim(n_fft=n_fft, hop_length=hop, n_iter=16, power=1.0)(magnitude)
    spectrum = torch.fft.rfft(rebuilt[n_fft:-n_fft])
    freqs = torch.fft.rfftfreq(len(rebuilt) - 2 * n_fft, 1 / sample_rate)
    assert abs(float(freqs[spectrum.abs().argmax()]) - 500.0) < 10.0  # the tone comes back at its pitch
