"""Audio files in and out: reading any soundfile format, mono mix-down,
resampling, silence trimming, fitting a clip to a spectrogram's length, and
atomic 16-bit WAV writing."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from ...atomic import atomic_write
from .spectrogram import SpectrogramConfig


class AudioFileError(ValueError):
    """An audio file that cannot be used: empty, corrupt, or not audio."""


def read_wav(path: str | os.PathLike) -> tuple[Tensor, int]:
    """``(channels, samples)`` float32 in [-1, 1] and the file's sample rate, with soundfile.
    Raises :class:`AudioFileError` naming the file when it is not readable audio or is empty."""
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no audio file at {str(path)!r}")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (samples, channels)
    except (RuntimeError, soundfile.LibsndfileError, TypeError, ValueError) as err:
        raise AudioFileError(f"{str(path)!r} is not a readable audio file ({err})") from None
    if data.shape[0] == 0:
        raise AudioFileError(f"{str(path)!r} holds no audio samples (an empty file)")
    return torch.from_numpy(data.T.copy()), int(rate)


def to_mono(audio: Tensor) -> Tensor:
    """``(channels, T)`` -> ``(T,)`` by averaging the channels (a 1-D input is returned as is)."""
    return audio if audio.ndim == 1 else audio.mean(0)


def resample(wave: Tensor, rate: int, target_rate: int) -> Tensor:
    """Resample the last axis from ``rate`` to ``target_rate`` (torchaudio's windowed sinc)."""
    if rate == target_rate:
        return wave
    import torchaudio.functional as AF

    return AF.resample(wave, int(rate), int(target_rate))


def resample_clips(clips: list[Tensor], rate: int, target_rate: int, chunk: int = 256) -> list[Tensor]:
    """Resample mono clips of different lengths from ``rate`` to ``target_rate``: zero-padded into
    batches of ``chunk``, resampled together (one sinc kernel per batch, not per clip), then each cut
    back to its own length."""
    out = []
    for start in range(0, len(clips), chunk):
        part = clips[start:start + chunk]
        longest = max(len(c) for c in part)
        batch = resample(torch.stack([torch.nn.functional.pad(c, (0, longest - len(c))) for c in part]), rate,
                         target_rate)  # (n, T')
        out += [row[: round(len(c) * target_rate / rate)] for c, row in zip(part, batch)]
    return out


def trim_silence(wave: Tensor, trim_db: float, frame: int = 64) -> Tensor:
    """Drop leading and trailing frames whose peak is more than ``trim_db`` below the clip's peak."""
    if trim_db <= 0 or wave.numel() == 0:
        return wave
    peak = float(wave.abs().max())
    if peak == 0:
        return wave[:0]
    padded = torch.nn.functional.pad(wave, (0, (-len(wave)) % frame))
    loud = padded.reshape(-1, frame).abs().amax(1) >= peak * 10 ** (-trim_db / 20)  # (frames,)
    index = loud.nonzero().flatten()
    return wave[int(index[0]) * frame: min(len(wave), (int(index[-1]) + 1) * frame)]


def fit_clip(wave: Tensor, spec: SpectrogramConfig) -> Tensor:
    """Trim silence, peak-normalise and crop (keep the start) or pad (silence at the end)
    a mono ``(T,)`` waveform to ``spec.clip_samples``."""
    wave = trim_silence(wave, spec.trim_db)
    if spec.peak > 0 and wave.numel() and float(wave.abs().max()) > 0:
        wave = wave * (spec.peak / float(wave.abs().max()))
    wave = wave[: spec.clip_samples]
    return torch.nn.functional.pad(wave, (0, spec.clip_samples - len(wave)))


def load_wav(path: str | os.PathLike, spec: SpectrogramConfig) -> Tensor:
    """A WAV (or any soundfile format) as one model-ready clip ``(clip_samples,)``: mono, at
    ``spec.sample_rate``, fitted by :func:`fit_clip`. A silent file is an error naming it."""
    audio, rate = read_wav(path)
    wave = resample(to_mono(audio), rate, spec.sample_rate)
    if float(wave.abs().max()) == 0:
        raise AudioFileError(f"{str(path)!r} is silent (every sample is 0)")
    return fit_clip(wave, spec)


def save_wav(wave: Tensor, path: str | os.PathLike, sample_rate: int) -> Path:
    """Write a mono ``(T,)`` waveform as 16-bit PCM WAV, atomically; values are clipped to [-1, 1]."""
    import soundfile

    wave = torch.as_tensor(wave).detach().float().cpu()
    if wave.ndim != 1:
        raise ValueError(f"save_wav writes one mono waveform of shape (T,), got {tuple(wave.shape)}")
    data = wave.clamp(-1, 1).numpy()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            soundfile.write(f, data, int(sample_rate), subtype="PCM_16", format="WAV")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, write)
