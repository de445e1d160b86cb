"""The audio adapter: WAV I/O and its bad inputs, clip fitting, mel round trip, f0, inpainting."""

import math

import numpy as np
import pytest
import torch

from multidiff.adapters import audio as A
from multidiff.core.samplers import SAMPLERS, default_sigmas
from multidiff.core.schedules import EDM

soundfile = pytest.importorskip("soundfile")


def tone(freq: float, seconds: float, rate: int, harmonics: int = 3) -> torch.Tensor:
    t = torch.arange(round(seconds * rate), dtype=torch.float64) / rate
    wave = sum(torch.sin(2 * math.pi * k * freq * t) / k for k in range(1, harmonics + 1))
    return (0.5 * wave / wave.abs().max()).float()


def write(path, data: np.ndarray, rate: int):
    soundfile.write(str(path), data, rate, subtype="PCM_16")
    return path


SPEC = A.SpectrogramConfig(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32, frames=64, griffin_lim_iters=32)


def test_config_round_trips_and_refuses_bad_settings():
    assert A.SpectrogramConfig.from_dict(SPEC.to_dict()) == SPEC
    assert SPEC.clip_samples == 64 * 63 and SPEC.shape == (1, 32, 64)
    with pytest.raises(ValueError, match="hop_length"):
        A.SpectrogramConfig(n_fft=128, hop_length=256)
    with pytest.raises(ValueError, match="n_mels"):
        A.SpectrogramConfig(n_fft=64, hop_length=16, n_mels=40)
    with pytest.raises(ValueError, match="f_max"):
        A.SpectrogramConfig(sample_rate=8000, f_max=6000)


def test_resampling_keeps_the_pitch(tmp_path):
    path = write(tmp_path / "a.wav", tone(440.0, 1.0, 16000).numpy(), 16000)
    wave = A.load_wav(path, SPEC)  # 16 kHz file -> 8 kHz clip
    assert wave.shape == (SPEC.clip_samples,)
    assert abs(float(A.cents(A.estimate_f0(wave, 8000), 440.0))) < 5


def test_stereo_is_mixed_down(tmp_path):
    left, right = tone(300.0, 0.2, 8000), tone(500.0, 0.2, 8000)
    path = write(tmp_path / "s.wav", torch.stack([left, right], 1).numpy(), 8000)
    audio, rate = A.read_wav(path)
    assert rate == 8000 and audio.shape == (2, len(left))
    expected = (left + right) / 2
    assert torch.allclose(A.to_mono(audio), expected, atol=2 / 32767)  # 16-bit quantisation


def test_short_clips_are_padded_at_the_end_and_long_ones_keep_their_start():
    spec = A.SpectrogramConfig(sample_rate=8000, n_fft=256, hop_length=64, frames=16, trim_db=0, peak=0)
    short = torch.linspace(0.1, 0.5, 100)
    fitted = A.fit_clip(short, spec)
    assert fitted.shape == (spec.clip_samples,) and torch.equal(fitted[:100], short) and not fitted[100:].any()
    long = torch.rand(spec.clip_samples * 3)
    assert torch.equal(A.fit_clip(long, spec), long[: spec.clip_samples])


def test_silence_is_trimmed_and_level_normalised():
    spec = A.SpectrogramConfig(sample_rate=8000, n_fft=256, hop_length=64, frames=64, peak=0.9)
    word = tone(200.0, 0.3, 8000)
    padded = torch.cat([torch.zeros(2000), word, torch.zeros(1000)])
    fitted = A.fit_clip(padded * 0.1, spec)
    assert float(fitted.abs().max()) == pytest.approx(0.9, rel=1e-5)
    assert float(fitted[:64].abs().max()) > 0  # the leading silence is gone: the word starts at once


def test_bad_files_raise_errors_that_name_them(tmp_path):
    garbage = tmp_path / "noise.wav"
    garbage.write_bytes(b"RIFF not really a wave file" * 10)
    with pytest.raises(A.AudioFileError, match="noise.wav"):
        A.read_wav(garbage)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(A.AudioFileError, match="notes.txt"):
        A.read_wav(text)
    empty = write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 8000)
    with pytest.raises(A.AudioFileError, match="empty.wav.*no audio"):
        A.read_wav(empty)
    silent = write(tmp_path / "silent.wav", np.zeros(800, dtype=np.float32), 8000)
    with pytest.raises(A.AudioFileError, match="silent.wav.*silent"):
        A.load_wav(silent, SPEC)
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        A.read_wav(tmp_path / "missing.wav")


def test_save_and_read_wav_round_trip(tmp_path):
    wave = tone(330.0, 0.25, 8000)
    path = A.save_wav(wave, tmp_path / "out" / "x.wav", 8000)
    back, rate = A.read_wav(path)
    assert rate == 8000 and torch.allclose(back[0], wave, atol=1 / 32767 + 1e-6)
    with pytest.raises(ValueError, match="mono"):
        A.save_wav(torch.zeros(2, 10), tmp_path / "y.wav", 8000)


def test_mel_round_trip_keeps_the_spectrogram_and_the_pitch():
    """decode inverts encode where the sound is: the loud mel bins of encode(decode(x)) keep the
    shape of x within 5 dB (quiet bins pick up Griffin-Lim's leakage, tens of dB below the tone) and
    its level or a quieter one (a clip whose Griffin-Lim peak overshoots is scaled down), the
    waveform is at the tone's pitch, and more iterations fit the magnitudes better."""
    spec = A.SpectrogramConfig(sample_rate=16000, n_fft=1024, hop_length=256, n_mels=64, frames=32)  # the notes'
    wave = A.fit_clip(tone(250.0, 1.0, 16000), spec)[None]
    x = A.encode(wave, spec)
    assert x.shape == (1, *spec.shape) and x.min() >= -1 and x.max() <= 1
    rebuilt = A.decode(x, spec)
    assert rebuilt.shape == wave.shape and rebuilt.abs().max() <= 1
    loud = x > 0  # within 50 dB of the ceiling
    error = (A.encode(rebuilt, spec) - x)[loud]
    assert loud.any() and (error - error.mean()).abs().mean() < 5 / (spec.db_ceiling - spec.db_floor) * 2
    assert error.mean() < 1 / (spec.db_ceiling - spec.db_floor) * 2  # no louder than the original (1 dB)
    assert abs(float(A.cents(A.estimate_f0(rebuilt, 16000), 250.0))) < 20
    power = A.mel_to_linear(A.to_power(x, spec), spec)  # Griffin-Lim itself, before the peak limit
    few, many = (A.spectral_convergence(wave, A.griffin_lim(power, spec, iters=n), spec) for n in (2, 64))
    assert float(many) < float(few)
    assert float(A.spectral_convergence(wave, wave, spec)) == 0 and float(A.log_spectral_distance(wave, wave, spec)) == 0


def test_decode_is_deterministic_in_its_seed():
    x = A.encode(A.fit_clip(tone(180.0, 1.0, 8000), SPEC)[None], SPEC)
    assert torch.equal(A.decode(x, SPEC, seed=3), A.decode(x, SPEC, seed=3))
    assert not torch.equal(A.decode(x, SPEC, seed=3), A.decode(x, SPEC, seed=4))


@pytest.mark.parametrize("freq", [82.4, 261.6, 523.3, 880.0])
def test_yin_finds_the_fundamental_of_harmonic_tones(freq):
    wave = tone(freq, 0.5, 16000, harmonics=6)
    assert abs(float(A.cents(A.estimate_f0(wave, 16000), freq))) < 5
    assert torch.isnan(A.estimate_f0(torch.zeros(8000), 16000)).all()


def test_encode_refuses_the_wrong_clip_length():
    with pytest.raises(ValueError, match="fit_clip"):
        A.encode(torch.zeros(2, 100), SPEC)


@pytest.mark.parametrize("method", list(SAMPLERS))
def test_inpainting_keeps_the_known_frames_exactly(method):
    """With the ideal denoiser of N(0, I) data, every sampler fills the unknown frames and leaves
    the known ones bit-exact."""
    schedule = EDM(sigma_data=1.0)

    def denoiser(x, sigma, cond=None):
        return x / (1 + sigma[:, None, None, None] ** 2)

    generator = torch.Generator().manual_seed(0)
    known = torch.randn(3, *SPEC.shape, generator=generator)
    for task in A.INPAINT_TASKS:
        mask = A.task_mask(3, SPEC, task)
        filled = A.inpaint_frames(denoiser, known, mask, default_sigmas(schedule, 6, method), method=method,
                                  generator=torch.Generator().manual_seed(1))
        keep = torch.broadcast_to(mask, known.shape) > 0
        assert torch.equal(filled[keep], known[keep])
        assert not torch.equal(filled[~keep], known[~keep]) and torch.isfinite(filled).all()


def test_frame_masks():
    mask = A.task_mask(2, SPEC, "continue")
    assert mask.shape == (2, 1, 1, SPEC.frames) and mask[..., : SPEC.frames // 2].all() and not mask[..., 32:].any()
    gap = A.task_mask(1, SPEC, "gap")[0, 0, 0]
    third = SPEC.frames // 3
    assert gap[:third].all() and gap[-third:].all() and not gap[third:-third].any()
    with pytest.raises(ValueError, match="continue, gap"):
        A.task_mask(1, SPEC, "middle")
    with pytest.raises(ValueError, match="within"):
        A.frame_mask(1, SPEC, known=(10, 100))


def test_spectrogram_picture(tmp_path):
    path = A.save_spectrograms(torch.rand(5, *SPEC.shape) * 2 - 1, tmp_path / "g.png", titles=list("abcde"))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- linear scale, masks and fill measures

LINEAR = A.SpectrogramConfig(sample_rate=8000, n_fft=256, hop_length=64, frames=64, griffin_lim_iters=32,
                             scale="linear")


def test_linear_scale_has_every_stft_bin_and_inverts_far_better_than_mel():
    assert LINEAR.bins == 129 and LINEAR.shape == (1, 129, 64)
    with pytest.raises(ValueError, match="scale"):
        A.SpectrogramConfig(scale="bark")
    assert A.SpectrogramConfig(n_fft=64, hop_length=16, n_mels=40, scale="linear").bins == 33  # n_mels unused
    wave = A.fit_clip(tone(330.0, 1.0, 8000, harmonics=6), LINEAR)[None]
    x = A.encode(wave, LINEAR)
    assert x.shape == (1, 1, 129, 64) and x.min() >= -1 and x.max() <= 1
    power = A.stft_magnitude(wave, LINEAR).pow(2)
    expected = (2 * (10 * torch.log10(power.clamp_min(1e-10)) + 60) / 100 - 1).clamp(-1, 1)
    assert torch.allclose(x[:, 0], expected, atol=1e-5)  # exactly the normalised |STFT|^2 in dB
    mel = A.SpectrogramConfig(**{**LINEAR.to_dict(), "scale": "mel"})
    linear_sc = float(A.spectral_convergence(wave, A.decode(x, LINEAR), LINEAR))
    mel_sc = float(A.spectral_convergence(wave, A.decode(A.encode(wave, mel), mel), mel))
    assert linear_sc < 0.25 and linear_sc < mel_sc / 2, (linear_sc, mel_sc)  # speech: 0.07 against 0.63


def test_a_saved_spectrogram_without_a_scale_is_mel():
    saved = {key: value for key, value in SPEC.to_dict().items() if key != "scale"}
    assert A.SpectrogramConfig.from_dict(saved).scale == "mel"


def test_random_masks_mix_generation_gaps_and_continuations():
    spec = A.SpectrogramConfig(sample_rate=16000, n_fft=1024, hop_length=256, frames=48, scale="linear")
    masks = A.random_masks(4000, spec, generator=torch.Generator().manual_seed(0), empty=0.5)[:, 0, 0]  # (B, T)
    again = A.random_masks(4000, spec, generator=torch.Generator().manual_seed(0), empty=0.5)[:, 0, 0]
    assert torch.equal(masks, again) and set(masks.unique().tolist()) <= {0.0, 1.0}
    empty = masks.sum(1) == 0
    assert abs(float(empty.float().mean()) - 0.5) < 0.03
    frame = spec.hop_length / spec.sample_rate
    shortest, longest = round(0.05 / frame), round(0.3 / frame)
    hidden = 1 - masks[~empty]
    runs = (hidden[:, 1:] - hidden[:, :-1]).clamp_min(0).sum(1) + hidden[:, 0]
    assert torch.equal(runs, torch.ones_like(runs))  # one hidden run each: a gap or a continuation
    widths = hidden.sum(1)
    tail = hidden[:, -1] == 1
    continuation = tail & (widths > longest)  # longer than any gap: must be a continuation
    assert torch.all((widths[~tail] >= shortest) & (widths[~tail] <= longest))
    assert torch.all((48 - widths[continuation] >= 48 // 4) & (48 - widths[continuation] <= 3 * 48 // 4))
    assert abs(float((~tail).float().sum() / len(masks)) - 0.25) < 0.04  # gaps inside the clip, most of a quarter
    widths = widths[~tail]
    assert len(widths.unique()) == longest - shortest + 1  # every gap width occurs


def test_context_signal_and_the_fill_baselines():
    known = torch.linspace(-1, 1, 2 * 3 * 10).reshape(2, 1, 3, 10)
    mask = A.frame_mask(2, A.SpectrogramConfig(frames=10), known=[(0, 3), (7, 10)])
    signal = A.context_signal(known, mask)
    assert signal.shape == (2, 2, 3, 10)
    assert torch.equal(signal[:, 1], torch.broadcast_to(mask[:, 0], (2, 3, 10)))
    assert torch.equal(signal[:, 0, :, 3:7], torch.zeros(2, 3, 4))
    assert torch.equal(signal[:, 0, :, :3], known[:, 0, :, :3])
    line = A.interpolate_frames(known, mask)
    assert torch.allclose(line, known, atol=1e-6)  # the data is a ramp in time: the line recovers it
    tail = A.frame_mask(1, A.SpectrogramConfig(frames=10), known=(0, 6))
    flat = torch.full((1, 1, 2, 10), 0.5)
    drawn = A.interpolate_frames(flat, tail)[0, 0, 0]
    assert torch.allclose(drawn[6:], torch.tensor([0.2, -0.1, -0.4, -0.7]))  # down to silence at the edge
    silent = A.silence_fill(flat, tail)
    assert torch.equal(silent[..., 6:], torch.full((1, 1, 2, 4), -1.0)) and torch.equal(silent[..., :6], flat[..., :6])
    assert torch.equal(A.hidden_rms(flat, flat, tail), torch.zeros(1))
    shifted = flat.clone()
    shifted[..., 6:] += 0.1
    shifted[..., :6] += 5.0  # known frames do not count
    assert torch.allclose(A.hidden_rms(shifted, flat, tail), torch.tensor([0.1]))
    spec = A.SpectrogramConfig(frames=10, db_floor=-60, db_ceiling=40)
    assert torch.allclose(A.hidden_lsd(shifted, flat, tail, spec), torch.tensor([5.0]))  # 0.1 units = 5 dB


def _line_by_loops(known, mask):
    """The straight line across each hidden run, frame by frame (what interpolate_frames computes at once)."""
    out = known.clone().float()
    frames = known.shape[-1]
    for b in range(known.shape[0]):
        flags = mask[b].reshape(-1) > 0
        for t in range(frames):
            if flags[t]:
                continue
            before = [k for k in range(t) if flags[k]]
            after = [k for k in range(t + 1, frames) if flags[k]]
            lo, hi = (before[-1] if before else -1), (after[0] if after else frames)
            left = known[b, ..., lo] if before else torch.full_like(known[b, ..., 0], -1.0)
            right = known[b, ..., hi] if after else torch.full_like(known[b, ..., 0], -1.0)
            w = (t - lo) / (hi - lo)
            out[b, ..., t] = (1 - w) * left + w * right
    return out


def test_the_line_across_random_masks_and_the_line_as_context():
    """interpolate_frames on every kind of training mask (gaps, continuations, nothing known) equals the
    frame-by-frame line; context_signal's "line" fill holds it in the hidden frames, "zero" holds 0."""
    spec = A.SpectrogramConfig(frames=24)
    known = torch.rand(40, 1, 5, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1
    mask = A.random_masks(40, spec, generator=torch.Generator().manual_seed(0), empty=0.2, gap_seconds=(0.02, 0.2))
    assert (mask.flatten(1).amax(1) == 0).any() and (mask.flatten(1).amin(1) == 0).all()
    line = A.interpolate_frames(known, mask)
    torch.testing.assert_close(line, _line_by_loops(known, mask))
    signal = A.context_signal(known, mask, "line")
    assert torch.equal(signal[:, 0], line[:, 0])
    assert torch.equal(signal[:, 1], torch.broadcast_to(mask[:, 0], (40, 5, 24)))
    zero = A.context_signal(known, mask)
    assert torch.equal(zero[:, 1], signal[:, 1]) and torch.equal(zero[:, 0], (known * mask)[:, 0])
    assert not torch.equal(zero, signal)
    with pytest.raises(ValueError, match="unknown context fill 'blur'"):
        A.context_signal(known, mask, "blur")


# 96 mels of a 512-point STFT at 16 kHz: narrow low bands share STFT bins, so the filterbank is rank-deficient
NARROW = A.SpectrogramConfig(sample_rate=16000, n_fft=512, hop_length=256, n_mels=96, frames=48, griffin_lim_iters=16)


def test_mel_inverse_is_non_negative_least_squares_that_reproduces_the_bands():
    """The NNLS inverse is an STFT power (non-negative, zero where no band reaches) whose bands are
    the mel power it was given, closer than the clamped plain least squares on a rank-deficient
    filterbank; a bad name is refused."""
    bank = A.mel_filterbank(NARROW)
    assert bank.shape == (96, 257) and int(torch.linalg.matrix_rank(bank)) < 96
    wave = A.fit_clip(tone(190.0, 1.0, 16000, harmonics=8), NARROW)[None]
    mel = A.mel_power(wave, NARROW)
    nnls = A.mel_to_linear(mel, NARROW)
    plain = A.mel_to_linear(mel, A.SpectrogramConfig(**{**NARROW.to_dict(), "mel_inverse": "lstsq"}))
    assert nnls.shape == (1, 257, 48) and nnls.min() >= 0

    def band_error(power):
        return float((bank @ power - mel).norm() / mel.norm())

    assert band_error(nnls) < 0.05 and band_error(nnls) < band_error(plain), (band_error(nnls), band_error(plain))
    with pytest.raises(ValueError, match="mel_inverse"):
        A.SpectrogramConfig(mel_inverse="pinv")


def test_mel_inverse_does_not_turn_small_band_errors_into_loud_spikes():
    """5 dB of noise on the bands: after the NNLS inverse the STFT power stays within a few times the
    clean inverse's total; the plain least-squares inverse of the same noisy bands puts far more
    power into the bins the narrow low bands share (why 16 kHz samples once decoded to hum)."""
    wave = A.fit_clip(tone(190.0, 1.0, 16000, harmonics=8), NARROW)[None]
    x = A.encode(wave, NARROW)
    noisy = A.to_power((x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1),
                       NARROW)
    plain_spec = A.SpectrogramConfig(**{**NARROW.to_dict(), "mel_inverse": "lstsq"})
    clean = A.mel_to_linear(A.to_power(x, NARROW), NARROW).sum()
    nnls, plain = (A.mel_to_linear(noisy, spec)[:, :40].sum() for spec in (NARROW, plain_spec))
    assert nnls < 3 * clean and plain > 3 * nnls, (float(clean), float(nnls), float(plain))
