"""Build the audio datasets the recipes use and cache them under $MULTIDIFF_CACHE/audio
(default ~/.cache/multidiff/audio); the recipes do the same on first use.

    python datasets/build_spoken_digits.py                  # spoken digits (300 + 50 per digit) and notes
    python datasets/build_spoken_digits.py --per-digit 1000 # the spoken_digits_gpu size
    python datasets/build_spoken_digits.py --wav-dir out/   # also write every clip as a WAV to listen to

Needs Debian's espeak-ng and flite (digits), fluidsynth and timgm6mb-soundfont (notes).
The sets are deterministic in --seed; the held-out voices are fixed (multidiff.data.audio.SPLIT_SEED).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from multidiff.adapters.audio import save_wav  # noqa: E402
from multidiff.data.audio import MissingTool, build_notes, build_spoken_digits  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-digit", type=int, default=300)
    parser.add_argument("--test-per-digit", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wav-dir", type=Path, help="write every clip here as WAV (train/ and test/)")
    args = parser.parse_args(argv)
    for name, build in (("spoken_digits", lambda: build_spoken_digits(args.per_digit, args.test_per_digit, args.seed)),
                        ("notes", build_notes)):
        start = time.perf_counter()
        try:
            data = build()
        except MissingTool as err:
            print(f"{name}: skipped: {err}")
            continue
        seconds = sum(len(a) for a in data.train["audio"] + data.test["audio"]) / data.sample_rate
        print(f"{name}: {len(data.train['audio'])} training / {len(data.test['audio'])} test clips, "
              f"{seconds / 60:.1f} min of audio, {time.perf_counter() - start:.0f} s\n  {data.info}")
        if args.wav_dir:
            for split in ("train", "test"):
                part = getattr(data, split)
                for i, (clip, label) in enumerate(zip(part["audio"], part["label"])):
                    cls = data.class_names[int(label)].replace(" ", "_")
                    save_wav(clip, args.wav_dir / name / split / f"{i:05d}-{cls}.wav", data.sample_rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
