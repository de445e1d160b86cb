"""Audio adapter: waveforms <-> normalised log-mel spectrograms, WAV files in
and out, time inpainting, and round-trip quality measures.

==========================  ==================================================
model space                 ``(B, 1, n_mels, frames)`` float in [-1, 1]:
                            ``2 (dB - db_floor) / (db_ceiling - db_floor) - 1``
                            of the power mel spectrogram, clipped
data space                  waveforms ``(B, clip_samples)`` float in [-1, 1]
                            at ``sample_rate``
encode                      torchaudio ``MelSpectrogram`` (HTK mel scale,
                            Hann window, centred frames)
decode                      dB -> power mel -> ``InverseMelScale`` (least
                            squares, clamped at 0) -> ``GriffinLim``
==========================  ==================================================

Every parameter lives in :class:`SpectrogramConfig`, which a run saves in its
config, so a run always decodes with what it was trained on.

Loading (:func:`load_wav`, :func:`fit_clip`): stereo is mixed down to mono,
other rates are resampled with ``torchaudio.functional.resample``; then the
clip is trimmed of leading and trailing silence (quieter than ``trim_db``
below its peak), peak-normalised to ``peak``, and fitted to
``clip_samples``: a longer clip keeps its first ``clip_samples`` samples (the
onset, which for a word or a note carries the identity), a shorter one is
padded with silence at the end.

torchaudio is imported inside the functions that need it, so importing this
module needs only torch.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..atomic import atomic_write
from ..core.inpainting import sample_inpaint
from ..core.samplers import DEFAULT_METHOD


@dataclass(frozen=True)
class SpectrogramConfig:
    """The spectrogram a run is trained on. ``frames`` fixes the clip length:
    ``clip_samples = hop_length * (frames - 1)`` gives exactly ``frames``
    centred frames."""

    sample_rate: int = 8000
    n_fft: int = 512
    hop_length: int = 128
    n_mels: int = 32
    f_min: float = 0.0
    f_max: float = 0.0  # 0: sample_rate / 2
    frames: int = 64
    db_floor: float = -60.0  # dB of the power mel that maps to -1 (and everything quieter)
    db_ceiling: float = 40.0  # dB that maps to +1
    griffin_lim_iters: int = 64
    trim_db: float = 40.0  # trim leading/trailing audio quieter than this below the peak; 0: no trimming
    peak: float = 0.9  # peak amplitude clips are normalised to; 0: leave the level as it is

    def __post_init__(self):
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels", "frames", "griffin_lim_iters"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hop_length > self.n_fft:
            raise ValueError(f"hop_length ({self.hop_length}) must not exceed n_fft ({self.n_fft})")
        if self.n_mels > self.n_fft // 2 + 1:
            raise ValueError(f"n_mels ({self.n_mels}) must not exceed the n_fft // 2 + 1 = {self.n_fft // 2 + 1} "
                             f"STFT bins")
        if not 0 <= self.f_min < self.top_frequency <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min {self.f_min}, f_max "
                             f"{self.f_max} at {self.sample_rate} Hz")
        if not self.db_floor < self.db_ceiling:
            raise ValueError(f"db_floor ({self.db_floor}) must be below db_ceiling ({self.db_ceiling})")
        if self.trim_db < 0 or not 0 <= self.peak <= 1:
            raise ValueError(f"need trim_db >= 0 and peak in [0, 1], got {self.trim_db}, {self.peak}")

    @property
    def top_frequency(self) -> float:
        return float(self.f_max) if self.f_max else self.sample_rate / 2

    @property
    def clip_samples(self) -> int:
        return self.hop_length * (self.frames - 1)

    @property
    def clip_seconds(self) -> float:
        return self.clip_samples / self.sample_rate

    @property
    def shape(self) -> tuple[int, int, int]:
        """Model-space shape of one clip: ``(1, n_mels, frames)``."""
        return (1, self.n_mels, self.frames)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SpectrogramConfig":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


# ---------------------------------------------------------------- WAV files


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


# ---------------------------------------------------------------- mel <-> waveform


def _mel_transform(spec: SpectrogramConfig):
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(
        sample_rate=spec.sample_rate, n_fft=spec.n_fft, hop_length=spec.hop_length, f_min=spec.f_min,
        f_max=spec.top_frequency, n_mels=spec.n_mels, power=2.0, center=True)


def mel_power(wave: Tensor, spec: SpectrogramConfig) -> Tensor:
    """Power mel spectrogram ``(B, n_mels, frames)`` of waveforms ``(B, T)``."""
    return _mel_transform(spec)(wave.float())


def _check_waves(wave: Tensor, spec: SpectrogramConfig) -> Tensor:
    wave = torch.as_tensor(wave)
    if wave.ndim == 1:
        wave = wave[None]
    if wave.ndim != 2 or wave.shape[1] != spec.clip_samples:
        raise ValueError(f"expected waveforms of shape (B, {spec.clip_samples}) ({spec.clip_seconds:.3f} s at "
                         f"{spec.sample_rate} Hz); fit clips with fit_clip first, got {tuple(wave.shape)}")
    return wave.float()


def encode(wave: Tensor, spec: SpectrogramConfig) -> Tensor:
    """Waveforms ``(B, clip_samples)`` -> model space ``(B, 1, n_mels, frames)`` in [-1, 1]."""
    mel = mel_power(_check_waves(wave, spec), spec)  # (B, n_mels, frames)
    db = 10 * torch.log10(mel.clamp_min(1e-10))
    x = 2 * (db - spec.db_floor) / (spec.db_ceiling - spec.db_floor) - 1
    return x.clamp(-1, 1)[:, None]


def to_power(x: Tensor, spec: SpectrogramConfig) -> Tensor:
    """Model space ``(B, 1, n_mels, frames)`` -> power mel ``(B, n_mels, frames)`` (inverse of the
    normalisation; values at -1 become the floor's power)."""
    if x.ndim != 4 or tuple(x.shape[1:3]) != (1, spec.n_mels):
        raise ValueError(f"expected spectrograms of shape (B, 1, {spec.n_mels}, frames), got {tuple(x.shape)}")
    db = (x.float().clamp(-1, 1)[:, 0] + 1) / 2 * (spec.db_ceiling - spec.db_floor) + spec.db_floor
    return 10 ** (db / 10)


def mel_to_linear(mel: Tensor, spec: SpectrogramConfig) -> Tensor:
    """Power mel ``(B, n_mels, frames)`` -> power STFT ``(B, n_fft // 2 + 1, frames)``: the
    least-squares inverse of the mel filterbank, clamped at 0."""
    import torchaudio

    inverse = torchaudio.transforms.InverseMelScale(
        n_stft=spec.n_fft // 2 + 1, n_mels=spec.n_mels, sample_rate=spec.sample_rate, f_min=spec.f_min,
        f_max=spec.top_frequency)
    return inverse(mel.float()).clamp_min(0)


def griffin_lim(power: Tensor, spec: SpectrogramConfig, *, iters: int | None = None, seed: int = 0,
                length: int | None = None) -> Tensor:
    """Waveforms ``(B, T)`` whose STFT magnitude matches ``power (B, n_fft // 2 + 1, frames)``:
    Griffin & Lim (1984) with the fast momentum of Perraudin et al. (2013), from random phases
    drawn from ``seed`` (the global RNG is left as it was)."""
    import torchaudio

    transform = torchaudio.transforms.GriffinLim(
        n_fft=spec.n_fft, hop_length=spec.hop_length, power=2.0, n_iter=spec.griffin_lim_iters if iters is None
        else iters, length=spec.clip_samples if length is None else length)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(power.float())


def decode(x: Tensor, spec: SpectrogramConfig, *, iters: int | None = None, seed: int = 0) -> Tensor:
    """Model space ``(B, 1, n_mels, frames)`` -> waveforms ``(B, clip_samples)`` in [-1, 1]. A clip whose
    Griffin-Lim peak exceeds 0.99 is scaled down to it, not clipped (clipping would add broadband
    distortion; Griffin-Lim peaks overshoot because the phases it finds are not the original's)."""
    wave = griffin_lim(mel_to_linear(to_power(x, spec), spec), spec, iters=iters, seed=seed)
    peak = wave.abs().amax(1, keepdim=True)  # (B, 1)
    return wave * (0.99 / peak.clamp_min(0.99))


# ---------------------------------------------------------------- quality of a reconstruction


def stft_magnitude(wave: Tensor, spec: SpectrogramConfig) -> Tensor:
    """|STFT| ``(B, n_fft // 2 + 1, frames)`` with the run's window and hop."""
    window = torch.hann_window(spec.n_fft)
    return torch.stft(wave.float(), spec.n_fft, spec.hop_length, window=window, center=True,
                      return_complex=True).abs()


def spectral_convergence(reference: Tensor, estimate: Tensor, spec: SpectrogramConfig) -> Tensor:
    """``|| |S_ref| - |S_est| ||_F / || |S_ref| ||_F`` per clip ``(B,)`` (Sturmel & Daudet 2011):
    0 is a perfect magnitude match; phase is ignored."""
    ref, est = stft_magnitude(reference, spec), stft_magnitude(estimate, spec)
    return (ref - est).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1).clamp_min(1e-12)


def log_spectral_distance(reference: Tensor, estimate: Tensor, spec: SpectrogramConfig,
                          floor_db: float = -80.0) -> Tensor:
    """Log-spectral distance in dB per clip ``(B,)``: the RMS over frequency of
    ``20 log10 |S_ref| - 20 log10 |S_est|``, averaged over frames, with magnitudes
    floored ``floor_db`` below the reference's peak so silence does not dominate."""
    ref, est = stft_magnitude(reference, spec), stft_magnitude(estimate, spec)
    floor = ref.flatten(1).amax(1).clamp_min(1e-12)[:, None, None] * 10 ** (floor_db / 20)
    diff = 20 * (torch.log10(torch.maximum(ref, floor)) - torch.log10(torch.maximum(est, floor)))
    return diff.pow(2).mean(1).sqrt().mean(1)


# ---------------------------------------------------------------- pitch


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


# ---------------------------------------------------------------- time inpainting


def frame_mask(batch: int, spec: SpectrogramConfig, *, known: tuple[int, int] | list[tuple[int, int]]) -> Tensor:
    """Known-frame mask ``(batch, 1, 1, frames)``: 1 on the frame ranges ``[start, stop)`` in
    ``known`` (one pair or a list of pairs), 0 elsewhere. Broadcasts over the mel axis."""
    ranges = [known] if isinstance(known, tuple) else list(known)
    mask = torch.zeros(batch, 1, 1, spec.frames)
    for start, stop in ranges:
        if not 0 <= start < stop <= spec.frames:
            raise ValueError(f"frame range [{start}, {stop}) must lie within [0, {spec.frames})")
        mask[..., start:stop] = 1
    return mask


INPAINT_TASKS = ("continue", "gap")


def task_mask(batch: int, spec: SpectrogramConfig, task: str) -> Tensor:
    """The mask of a named time-inpainting task: ``continue`` keeps the first half of the frames
    and generates the second; ``gap`` keeps the first and last third and fills the middle."""
    if task == "continue":
        return frame_mask(batch, spec, known=(0, spec.frames // 2))
    if task == "gap":
        third = spec.frames // 3
        return frame_mask(batch, spec, known=[(0, third), (spec.frames - third, spec.frames)])
    raise ValueError(f"unknown audio inpainting task {task!r}; choose one of: {', '.join(INPAINT_TASKS)}")


def inpaint_frames(denoiser, known: Tensor, mask: Tensor, sigmas: Tensor, *, method: str = DEFAULT_METHOD,
                   cond=None, generator: torch.Generator | None = None, **options) -> Tensor:
    """Generate the frames where ``mask == 0`` of model-space spectrograms ``known (B, 1, F, T)``
    with any sampler; the known frames come back exactly."""
    if known.ndim != 4:
        raise ValueError(f"known must be model-space spectrograms (B, 1, n_mels, frames), got "
                         f"{tuple(known.shape)}")
    return sample_inpaint(denoiser, known, mask, sigmas, method=method, cond=cond, generator=generator, **options)


# ---------------------------------------------------------------- pictures


def save_spectrograms(x: Tensor, path: str | os.PathLike, *, ncol: int = 10, titles: list[str] | None = None,
                      spec: SpectrogramConfig | None = None) -> Path:
    """A PNG grid of model-space spectrograms ``(B, 1, F, T)`` (low frequencies at the bottom),
    written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = x.detach().float().cpu()
    count = len(x)
    ncol = max(1, min(ncol, count))
    nrow = math.ceil(count / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.6 * ncol, 1.1 * nrow + 0.2 * (titles is not None)),
                             squeeze=False)
    extent = None
    if spec is not None:
        extent = (0, spec.clip_seconds, 0, spec.n_mels)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < count:
            ax.imshow(x[i, 0].numpy(), origin="lower", aspect="auto", cmap="magma", vmin=-1, vmax=1, extent=extent)
            if titles is not None:
                ax.set_title(titles[i], fontsize=7)
    fig.tight_layout(pad=0.2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=100)

    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)


__all__ = ["AudioFileError", "INPAINT_TASKS", "SpectrogramConfig", "cents", "decode", "encode", "estimate_f0",
           "fit_clip", "frame_mask", "midi_to_hz",
           "griffin_lim", "inpaint_frames", "load_wav", "log_spectral_distance", "mel_power", "mel_to_linear",
           "read_wav", "resample", "resample_clips", "save_spectrograms", "save_wav", "spectral_convergence", "stft_magnitude",
           "task_mask", "to_mono", "to_power", "trim_silence"]
