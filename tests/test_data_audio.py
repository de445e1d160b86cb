"""Audio data: the TTS digit builder (deterministic, voices split), the notes renderer, the
Asterisk recordings and your own folder. Tests that need a Debian package skip naming it."""

from pathlib import Path

import numpy as np
import pytest
import torch

from multidiff.adapters.audio import AudioFileError, cents, estimate_f0, midi_to_hz
from multidiff.data import audio as D

soundfile = pytest.importorskip("soundfile")

needs_tts = pytest.mark.requires("tts")
needs_fluidsynth = pytest.mark.requires("fluidsynth")


def test_voice_split_is_fixed_and_disjoint():
    variants = [f"v{i}" for i in range(40)]
    train, held = D.voice_split(variants)
    assert (train, held) == D.voice_split(list(variants))
    assert not set(train) & set(held) and sorted(train + held) == sorted(variants)
    assert len(held) == round(D.HELD_OUT_FRACTION * 40)


@needs_tts
def test_spoken_digits_are_deterministic_and_test_voices_are_never_trained_on(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIDIFF_CACHE", str(tmp_path))
    first = D.build_spoken_digits(per_digit=2, test_per_digit=1, seed=5, cache=False)
    second = D.build_spoken_digits(per_digit=2, test_per_digit=1, seed=5, cache=False)
    assert len(first.train["audio"]) == 20 and len(first.test["audio"]) == 10
    assert first.train["source"] == second.train["source"]
    assert all(torch.equal(a, b) for a, b in zip(first.train["audio"], second.train["audio"]))
    assert torch.equal(first.train["label"], torch.arange(10).repeat_interleave(2))
    voice = lambda source: source.split("+")[-1] if source.startswith("espeak") else source  # noqa: E731
    assert not {voice(s) for s in first.test["source"]} & {voice(s) for s in first.train["source"]}
    assert all(len(a) > 0.1 * D.BUILD_RATE and a.abs().max() <= 1 for a in first.train["audio"])
    cached = D.build_spoken_digits(per_digit=2, test_per_digit=1, seed=5)  # builds the cache, then reads it
    again = D.build_spoken_digits(per_digit=2, test_per_digit=1, seed=5)
    assert all(torch.allclose(a, b, atol=1 / 32767) for a, b in zip(cached.train["audio"], first.train["audio"]))
    assert all(torch.equal(a, b) for a, b in zip(cached.train["audio"], again.train["audio"]))
    other = D.build_spoken_digits(per_digit=2, test_per_digit=1, seed=6, cache=False)
    assert other.train["source"] != first.train["source"]


def test_asterisk_recordings_or_a_clear_reason():
    try:
        real = D.load_asterisk_digits()
    except D.MissingTool as err:
        assert "asterisk-core-sounds-en-wav" in str(err)
        pytest.skip(str(err))
    assert torch.equal(real["label"], torch.arange(10)) and all(len(a) > 1000 for a in real["audio"])


def test_midi_file_is_a_valid_standard_midi_file():
    data = D.midi_file(40, [(0.0, 0.5, 60, 100), (1.0, 0.5, 64, 90)])
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk"
    track = data[22:]
    assert int.from_bytes(data[18:22], "big") == len(track) and track.endswith(b"\x00\xff\x2f\x00")
    assert bytes([0xC0, 40]) in track and bytes([0x90, 60, 100]) in track and bytes([0x80, 64, 0]) in track
    assert D._vlq(0) == b"\x00" and D._vlq(128) == b"\x81\x00" and D._vlq(960) == b"\x87\x40"


@needs_fluidsynth
def test_rendered_notes_are_at_their_pitch(tmp_path):
    clips = D._render_instrument(0, [(57, 100, 0.5), (69, 100, 0.5)], tmp_path, D.soundfont())
    f0 = estimate_f0(torch.stack([c[:8000] for c in clips]), D.BUILD_RATE)
    assert cents(f0, midi_to_hz(torch.tensor([57, 69]))).abs().max() < 50
    assert D.note_label(57, 3) == D.NOTE_PITCHES.index(57) * len(D.NOTE_INSTRUMENTS) + 3
    assert D.label_pitch(D.note_label(57, 3)) == 57


def _tone_file(path: Path, freq: float, rate: int = 8000) -> Path:
    t = np.arange(rate // 2) / rate
    soundfile.write(str(path), (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, subtype="PCM_16")
    return path


def test_wav_folder_with_classes_and_without(tmp_path):
    for name, freq in (("high", 800.0), ("low", 200.0)):
        (tmp_path / "classes" / name).mkdir(parents=True)
        for i in range(10):
            _tone_file(tmp_path / "classes" / name / f"{i}.wav", freq * (1 + 0.01 * i))
    data = D.load_wav_folder(tmp_path / "classes")
    assert data.class_names == ("high", "low") and data.num_classes == 2
    assert len(data.train["audio"]) == 18 and len(data.test["audio"]) == 2
    assert sorted(data.test["label"].tolist()) == [0, 1]
    assert data.train["source"] == D.load_wav_folder(tmp_path / "classes").train["source"]  # a fixed split
    (tmp_path / "flat").mkdir()
    for i in range(3):
        _tone_file(tmp_path / "flat" / f"{i}.wav", 300.0)
    flat = D.load_wav_folder(tmp_path / "flat")
    assert flat.num_classes == 1 and not flat.train["label"].any()


def test_wav_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        D.load_wav_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        D.load_wav_folder(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    _tone_file(tmp_path / "bad" / "good.wav", 300.0)
    (tmp_path / "bad" / "broken.wav").write_bytes(b"\x00\x01 definitely not audio")
    with pytest.raises(AudioFileError, match="broken.wav"):
        D.load_wav_folder(tmp_path / "bad")


def test_fitted_clips_resample_and_fit():
    from multidiff.adapters.audio import SpectrogramConfig

    spec = SpectrogramConfig(sample_rate=8000, n_fft=256, hop_length=64, frames=16)
    split = {"audio": [torch.rand(16000) - 0.5, torch.rand(100) - 0.5], "label": torch.tensor([0, 1])}
    clips = D.fitted_clips(split, 16000, spec)
    assert clips.shape == (2, spec.clip_samples) and clips.abs().max() <= spec.peak + 1e-6


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="spoken_digits, notes, folder"):
        D.load_audio_dataset("birdsong")
