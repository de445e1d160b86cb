"""Audio datasets made on this machine, with no download at run time.

Every loader returns an :class:`AudioDataset`: ``train`` and ``test`` are dicts
``{"audio": [ (T_i,) float32 ... ], "label": (N,) int64, "source": [str ...]}``
of variable-length mono clips at ``sample_rate`` (16 kHz for the builders),
trimmed of silence. Recipes fit them to a spectrogram's clip length with
:func:`multidiff.adapters.audio.fit_clip` (see :func:`fitted_clips`).

==================  ============================================================
``spoken_digits``   "zero" ... "nine" said by Debian's two TTS engines:
                    espeak-ng (8 English accents x ~100 voice variants, speed
                    130-200 words/min, pitch 25-75) and flite (voices kal, kal16,
                    awb, slt, rms; duration stretch 0.85-1.2, f0 target per
                    voice). Voices are split: 15% of the espeak-ng variants
                    (in every accent) and flite's ``rms`` are *held out* and
                    make the test split alone, so test voices are never trained on
``asterisk``        real speech, held out: the ten digit recordings of the
                    Asterisk PBX prompts (one human speaker, 8 kHz), Debian
                    ``asterisk-core-sounds-en-wav`` (CC-BY-SA-3.0); test only
``notes``           single notes rendered by fluidsynth from a General MIDI
                    soundfont (Debian ``fluidsynth`` + ``timgm6mb-soundfont``):
                    MIDI pitches 48-72 on 6 instruments, 5 velocities x 2
                    lengths; label = ``pitch_index * 6 + instrument``; the test
                    split holds one of the 5 velocities
``folder``          your WAV files: one subfolder per class (or files directly
                    in the folder: unconditional), a fixed 10% test split
==================  ============================================================

Built sets are deterministic in their seed and cached as ``.npz`` (int16 PCM)
under ``$MULTIDIFF_CACHE/audio`` (default ``~/.cache/multidiff/audio``), keyed by
every parameter that changes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .cache import cache_dir as shared_cache_dir

Tensor = torch.Tensor

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
BUILD_RATE = 16000
ESPEAK_ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
                  "en-us-nyc")
FLITE_VOICES = {"kal": (85.0, 130.0), "kal16": (85.0, 130.0), "awb": (90.0, 140.0), "slt": (150.0, 220.0),
                "rms": (85.0, 130.0)}  # voice -> range of the f0 target mean (Hz)
FLITE_HELD_OUT = ("rms",)
HELD_OUT_FRACTION = 0.15
SPLIT_SEED = 0  # fixes which voices are held out (the bundled classifier's test voices depend on it)
ASTERISK_DIGITS = Path("/usr/share/asterisk/sounds/en_US_f_Allison/digits")
ASTERISK_FALLBACK = Path("/usr/share/asterisk/sounds/en/digits")
NOTE_INSTRUMENTS = {"piano": 0, "nylon guitar": 24, "violin": 40, "trumpet": 56, "flute": 73, "clarinet": 71}
NOTE_PITCHES = tuple(range(48, 73))  # C3 .. C5
NOTE_VELOCITIES = (50, 70, 90, 105, 120)
NOTE_TEST_VELOCITY = 90
NOTE_LENGTHS = (0.6, 1.0)  # seconds the key is held
SOUNDFONTS = ("/usr/share/sounds/sf2/TimGM6mb.sf2", "/usr/share/sounds/sf2/FluidR3_GM.sf2")


class MissingTool(FileNotFoundError):
    """A Debian program or data package a dataset needs is not installed."""


@dataclass(frozen=True)
class AudioDataset:
    """Variable-length clips with a fixed split (see the module docstring)."""

    name: str
    sample_rate: int
    train: dict = field(repr=False)
    test: dict = field(repr=False)
    class_names: tuple[str, ...]
    info: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def cache_dir() -> Path:
    return shared_cache_dir("audio")


def _need(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise MissingTool(f"{program} is not installed; on Debian/Ubuntu: sudo apt-get install {package}")
    return path


# ---------------------------------------------------------------- npz cache (int16 PCM, no pickles)


def _pack(split: dict) -> dict[str, np.ndarray]:
    lengths = np.array([len(a) for a in split["audio"]], dtype=np.int64)
    pcm = np.concatenate([np.round(np.clip(a.numpy(), -1, 1) * 32767).astype(np.int16) for a in split["audio"]])
    return {"pcm": pcm, "lengths": lengths, "label": split["label"].numpy(),
            "source": np.array(split["source"], dtype=np.str_)}


def _unpack(arrays, prefix: str) -> dict:
    pcm, lengths = arrays[prefix + "pcm"], arrays[prefix + "lengths"]
    ends = np.cumsum(lengths)
    audio = [torch.from_numpy(pcm[e - n:e].astype(np.float32) / 32767) for n, e in zip(lengths, ends)]
    return {"audio": audio, "label": torch.from_numpy(arrays[prefix + "label"].astype(np.int64)),
            "source": [str(s) for s in arrays[prefix + "source"]]}


def _cached(name: str, params: dict, build) -> tuple[dict, dict]:
    """``build()``'s (train, test), cached in an npz named by a hash of ``params``."""
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / f"{name}-{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return _unpack(arrays, "train_"), _unpack(arrays, "test_")
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a damaged cache is rebuilt, not trusted
    train, test = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {**{"train_" + k: v for k, v in _pack(train).items()}, **{"test_" + k: v for k, v in _pack(test).items()}}
    from ..atomic import atomic_write_npz

    atomic_write_npz(path, arrays)
    return _unpack(arrays, "train_"), _unpack(arrays, "test_")  # as a later read returns them (16-bit)


# ---------------------------------------------------------------- reading rendered files


def _read_clip(path: Path, trim_db: float = 40.0) -> Tensor:
    return _read_clips([path], trim_db)[0]


def _read_clips(paths: list[Path], trim_db: float = 40.0) -> list[Tensor]:
    """Mono clips at ``BUILD_RATE``, trimmed of silence. Files of one rate are resampled together
    (zero-padded to one length, then cut back), so the resampling kernel is built once per rate."""
    from ..adapters.audio import read_wav, resample_clips, to_mono, trim_silence

    loaded = [read_wav(p) for p in paths]
    clips: list[Tensor | None] = [None] * len(paths)
    by_rate = {}
    for i, (_, rate) in enumerate(loaded):
        by_rate.setdefault(rate, []).append(i)
    for rate, index in by_rate.items():
        waves = resample_clips([to_mono(loaded[i][0]) for i in index], rate, BUILD_RATE)
        for i, wave in zip(index, waves):
            clips[i] = trim_silence(wave, trim_db).clamp(-1, 1).contiguous()
    return clips


def _run_all(commands: list[list[str]], workers: int | None = None) -> None:
    def run(command):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:3])} ... failed: {done.stderr.strip()[:300]}")

    with ThreadPoolExecutor(max_workers=workers or max(2, os.cpu_count() or 1)) as pool:
        list(pool.map(run, commands))


# ---------------------------------------------------------------- spoken digits


def espeak_variants() -> list[str]:
    """The voice variants espeak-ng has here (``espeak-ng --voices=variant``), sorted."""
    out = subprocess.run([_need("espeak-ng", "espeak-ng"), "--voices=variant"], capture_output=True, text=True,
                         check=True).stdout.splitlines()[1:]
    names = sorted({line.split()[4].split("/")[-1] for line in out if len(line.split()) >= 5})
    return names


def voice_split(variants: list[str]) -> tuple[list[str], list[str]]:
    """(training variants, held-out variants): a fixed ``HELD_OUT_FRACTION`` by ``SPLIT_SEED``."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(variants))
    count = max(1, round(HELD_OUT_FRACTION * len(variants)))
    held = sorted(variants[i] for i in order[:count])
    return [v for v in variants if v not in held], held


def _digit_jobs(per_digit: int, variants: list[str], flite_voices: list[str], flite_share: float,
                rng: np.random.Generator) -> list[tuple[int, str, list[str]]]:
    """(label, source id, command template) for ``per_digit`` clips of every digit."""
    jobs = []
    espeak, flite = _need("espeak-ng", "espeak-ng"), _need("flite", "flite")
    for label in range(10):
        word = DIGIT_WORDS[label]
        for _ in range(per_digit):
            if rng.random() < flite_share:
                voice = flite_voices[rng.integers(len(flite_voices))]
                lo, hi = FLITE_VOICES[voice]
                stretch, f0 = float(rng.uniform(0.85, 1.2)), float(rng.uniform(lo, hi))
                source = f"flite:{voice}"
                command = [flite, "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}", "--setf",
                           f"int_f0_target_mean={f0:.1f}", "-t", word, "-o"]
            else:
                accent = ESPEAK_ACCENTS[rng.integers(len(ESPEAK_ACCENTS))]
                variant = variants[rng.integers(len(variants))]
                speed, pitch = int(rng.integers(130, 201)), int(rng.integers(25, 76))
                source = f"espeak-ng:{accent}+{variant}"
                command = [espeak, "-v", f"{accent}+{variant}", "-s", str(speed), "-p", str(pitch), "-w"]
            jobs.append((label, source, command, word))
    return jobs


def _render_digits(jobs) -> dict:
    with tempfile.TemporaryDirectory(prefix="multidiff-digits-") as tmp:
        commands, paths = [], []
        for i, (_, _, command, word) in enumerate(jobs):
            path = Path(tmp) / f"{i:06d}.wav"
            paths.append(path)
            commands.append(command + ([str(path)] if command[-1] == "-o" else [str(path), word]))
        _run_all(commands)
        audio = _read_clips(paths)
    keep = [i for i, a in enumerate(audio) if len(a) > 0]
    return {"audio": [audio[i] for i in keep], "label": torch.tensor([jobs[i][0] for i in keep]),
            "source": [jobs[i][1] for i in keep]}


def build_spoken_digits(per_digit: int = 300, test_per_digit: int = 50, seed: int = 0, flite_share: float = 0.2,
                        cache: bool = True) -> AudioDataset:
    """The spoken-digit set (see the module docstring): ``per_digit`` training clips of each digit
    from training voices and ``test_per_digit`` from held-out voices, deterministic in ``seed``."""
    if per_digit < 1 or test_per_digit < 1:
        raise ValueError(f"need per_digit >= 1 and test_per_digit >= 1, got {per_digit}, {test_per_digit}")
    variants = espeak_variants()
    _need("flite", "flite")
    train_variants, held_variants = voice_split(variants)
    train_flite = [v for v in FLITE_VOICES if v not in FLITE_HELD_OUT]
    params = {"per_digit": per_digit, "test_per_digit": test_per_digit, "seed": seed, "flite_share": flite_share,
              "variants": variants, "version": 1}

    def build():
        rng = np.random.default_rng(seed)
        train = _render_digits(_digit_jobs(per_digit, train_variants, train_flite, flite_share, rng))
        test = _render_digits(_digit_jobs(test_per_digit, held_variants, list(FLITE_HELD_OUT), flite_share, rng))
        return train, test

    train, test = _cached("spoken_digits", params, build) if cache else build()
    info = (f"spoken digits: espeak-ng ({len(train_variants)} training / {len(held_variants)} held-out voice "
            f"variants x {len(ESPEAK_ACCENTS)} accents) and flite (training {', '.join(train_flite)}; held out "
            f"{', '.join(FLITE_HELD_OUT)}), made on this machine")
    return AudioDataset("spoken_digits", BUILD_RATE, train, test, tuple(DIGIT_WORDS), info)


def load_asterisk_digits() -> dict:
    """The ten Asterisk digit recordings (one real speaker) as a test split ``{"audio", "label", "source"}``."""
    for root in (ASTERISK_DIGITS, ASTERISK_FALLBACK):
        if all((root / f"{d}.wav").is_file() for d in range(10)):
            audio = _read_clips([root / f"{d}.wav" for d in range(10)])
            return {"audio": audio, "label": torch.arange(10), "source": [f"asterisk:{d}" for d in range(10)]}
    raise MissingTool(f"no Asterisk digit recordings in {str(ASTERISK_DIGITS)!r}; on Debian/Ubuntu: sudo apt-get "
                      f"install asterisk-core-sounds-en-wav")


# ---------------------------------------------------------------- musical notes


def _vlq(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.insert(0, (value & 0x7F) | 0x80)
        value >>= 7
    return bytes(out)


def midi_file(program: int, notes: list[tuple[float, float, int, int]], ticks_per_beat: int = 480,
              tempo_us: int = 500_000) -> bytes:
    """A format-0 Standard MIDI File playing ``notes = [(start_s, length_s, pitch, velocity), ...]``
    on General MIDI ``program`` (channel 0). At 120 bpm one second is 960 ticks."""
    ticks_per_second = ticks_per_beat * 1_000_000 / tempo_us
    events = []  # (tick, order, bytes): note-offs sort before note-ons at the same tick
    for start, length, pitch, velocity in notes:
        events.append((round(start * ticks_per_second), 1, bytes([0x90, pitch, velocity])))
        events.append((round((start + length) * ticks_per_second), 0, bytes([0x80, pitch, 0])))
    events.sort()
    track = bytearray(b"\x00\xff\x51\x03" + tempo_us.to_bytes(3, "big") + b"\x00" + bytes([0xC0, program]))
    tick = 0
    for when, _, message in events:
        track += _vlq(when - tick) + message
        tick = when
    track += b"\x00\xff\x2f\x00"
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
    header += ticks_per_beat.to_bytes(2, "big")
    return header + b"MTrk" + len(track).to_bytes(4, "big") + bytes(track)


def soundfont() -> str:
    for path in SOUNDFONTS:
        if Path(path).is_file():
            return path
    raise MissingTool("no General MIDI soundfont; on Debian/Ubuntu: sudo apt-get install timgm6mb-soundfont")


NOTE_SPACING = 2.0  # seconds between note onsets in the rendered sequence (the release dies away)


def _render_instrument(program: int, notes: list[tuple[int, int, float]], tmp: Path, sf2: str) -> list[Tensor]:
    """Render ``notes = [(pitch, velocity, length), ...]`` one after another with fluidsynth and cut
    them apart: each clip runs from its onset to the next onset."""
    from ..adapters.audio import read_wav, to_mono

    timed = [(i * NOTE_SPACING + 0.1, length, pitch, velocity) for i, (pitch, velocity, length) in enumerate(notes)]
    midi, wav = tmp / f"program{program}.mid", tmp / f"program{program}.wav"
    midi.write_bytes(midi_file(program, timed))
    _run_all([[_need("fluidsynth", "fluidsynth"), "-ni", "-q", "-g", "0.8", "-r", str(BUILD_RATE), "-F", str(wav),
               sf2, str(midi)]], workers=1)
    audio, rate = read_wav(wav)
    audio = to_mono(audio)
    if rate != BUILD_RATE:
        from ..adapters.audio import resample

        audio = resample(audio, rate, BUILD_RATE)
    clips = []
    for start, _, _, _ in timed:
        begin = round(start * BUILD_RATE)
        clips.append(audio[begin: begin + round((NOTE_SPACING - 0.1) * BUILD_RATE)].contiguous())
    return clips


def note_label(pitch: int, instrument: int) -> int:
    return NOTE_PITCHES.index(pitch) * len(NOTE_INSTRUMENTS) + instrument


def label_pitch(label: int) -> int:
    """The MIDI pitch of a ``notes`` label."""
    return NOTE_PITCHES[label // len(NOTE_INSTRUMENTS)]


def label_instrument(label: int) -> int:
    """The instrument index (into :data:`NOTE_INSTRUMENTS`) of a ``notes`` label."""
    return int(label) % len(NOTE_INSTRUMENTS)


def build_notes(cache: bool = True) -> AudioDataset:
    """The notes set (see the module docstring); the test split is every note at velocity
    ``NOTE_TEST_VELOCITY``."""
    sf2 = soundfont()
    _need("fluidsynth", "fluidsynth")
    params = {"soundfont": Path(sf2).name, "instruments": NOTE_INSTRUMENTS, "pitches": NOTE_PITCHES,
              "velocities": NOTE_VELOCITIES, "lengths": NOTE_LENGTHS, "rate": BUILD_RATE, "version": 1}
    names = list(NOTE_INSTRUMENTS)

    def build():
        splits = {"train": {"audio": [], "label": [], "source": []}, "test": {"audio": [], "label": [], "source": []}}
        with tempfile.TemporaryDirectory(prefix="multidiff-notes-") as tmp:
            for index, name in enumerate(names):
                notes = [(p, v, n) for p in NOTE_PITCHES for v in NOTE_VELOCITIES for n in NOTE_LENGTHS]
                clips = _render_instrument(NOTE_INSTRUMENTS[name], notes, Path(tmp), sf2)
                for (pitch, velocity, length), clip in zip(notes, clips):
                    split = splits["test" if velocity == NOTE_TEST_VELOCITY else "train"]
                    split["audio"].append(clip)
                    split["label"].append(note_label(pitch, index))
                    split["source"].append(f"{Path(sf2).stem}:{name}:midi{pitch}:v{velocity}:{length}s")
        for split in splits.values():
            split["label"] = torch.tensor(split["label"])
        return splits["train"], splits["test"]

    train, test = _cached("notes", params, build) if cache else build()
    class_names = tuple(f"midi{p} {name}" for p in NOTE_PITCHES for name in names)
    info = (f"notes: fluidsynth with {Path(sf2).name}, MIDI {NOTE_PITCHES[0]}-{NOTE_PITCHES[-1]} on "
            f"{', '.join(names)}; velocities {NOTE_VELOCITIES} (test: {NOTE_TEST_VELOCITY})")
    return AudioDataset("notes", BUILD_RATE, train, test, class_names, info)


# ---------------------------------------------------------------- your own folder

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif")
FOLDER_TEST_FRACTION = 0.1


def load_wav_folder(root: str | os.PathLike, seed: int = 0) -> AudioDataset:
    """Audio files under ``root``: one subfolder per class (sorted names are the classes), or
    files directly in ``root`` (one class: unconditional). A fixed ``FOLDER_TEST_FRACTION`` of each
    class (at least one file when it has two) is the test split. Unreadable files are errors
    naming the file."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no folder at {str(root)!r} (give data_root=DIR with your WAV files)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def files(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())

    groups = [(i, files(root / name)) for i, name in enumerate(classes)] if classes else [(0, files(root))]
    if not any(paths for _, paths in groups):
        raise ValueError(f"{str(root)!r} has no audio files ({', '.join(AUDIO_EXTENSIONS)}), directly or in "
                         f"class subfolders")
    rng = np.random.default_rng(seed)
    splits = {"train": {"audio": [], "label": [], "source": []}, "test": {"audio": [], "label": [], "source": []}}
    for label, paths in groups:
        order = rng.permutation(len(paths))
        n_test = max(1, round(FOLDER_TEST_FRACTION * len(paths))) if len(paths) >= 2 else 0
        for rank, i in enumerate(order):
            split = splits["test" if rank < n_test else "train"]
            split["audio"].append(_read_clip(paths[i]))
            split["label"].append(label)
            split["source"].append(str(paths[i].relative_to(root)))
    for split in splits.values():
        split["label"] = torch.tensor(split["label"], dtype=torch.int64)
    if not splits["train"]["audio"]:
        raise ValueError(f"{str(root)!r} has too few files to train on (need at least 2 per class)")
    return AudioDataset("folder", BUILD_RATE, splits["train"], splits["test"], tuple(classes) or ("audio",),
                        f"your files in {str(root)!r}")


# ---------------------------------------------------------------- to a spectrogram's clips


def fitted_clips(split: dict, sample_rate: int, spec) -> Tensor:
    """The clips of ``split`` at ``spec.sample_rate``, each fitted to ``spec.clip_samples``
    (:func:`multidiff.adapters.audio.fit_clip`): ``(N, clip_samples)`` float32."""
    from ..adapters.audio import fit_clip, resample_clips

    if not split["audio"]:
        return torch.zeros(0, spec.clip_samples)
    return torch.stack([fit_clip(c, spec) for c in resample_clips(split["audio"], sample_rate, spec.sample_rate)])


AUDIO_DATASETS = ("spoken_digits", "notes", "folder")


def load_audio_dataset(name: str, **options) -> AudioDataset:
    """``spoken_digits`` (options of :func:`build_spoken_digits`), ``notes`` or ``folder`` (``root=``)."""
    if name == "spoken_digits":
        return build_spoken_digits(**options)
    if name == "notes":
        return build_notes(**options)
    if name == "folder":
        return load_wav_folder(**options)
    raise ValueError(f"unknown audio dataset {name!r}; choose one of: {', '.join(AUDIO_DATASETS)}")


__all__ = ["AUDIO_DATASETS", "AudioDataset", "DIGIT_WORDS", "MissingTool", "build_notes", "build_spoken_digits",
           "fitted_clips", "label_pitch", "load_asterisk_digits", "load_audio_dataset", "load_wav_folder",
           "midi_file", "note_label", "voice_split"]
