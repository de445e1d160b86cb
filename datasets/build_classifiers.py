"""Train the feature classifiers used by the image and audio metrics and write them to
datasets/classifiers/<dataset>/ (config.json + classifier.safetensors).

    python datasets/build_classifiers.py              # every dataset whose data is installed
    python datasets/build_classifiers.py digits       # just one
    python datasets/build_classifiers.py spoken_digits notes   # the audio ones (~7 and ~14 min on 2 busy cores)

The settings are multidiff.metrics.images.CLASSIFIER_TRAINING (images) and
multidiff.metrics.audio.CLASSIFIER_TRAINING / CLASSIFIER_SPECS (audio);
training is seeded and single-threaded, so a rebuild on the same machine gives
the same weights. A dataset whose data (or Debian tool) is missing is skipped
with the reason.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from multidiff.metrics.audio import CLASSIFIER_SPECS, build_audio_classifier  # noqa: E402
from multidiff.metrics.images import CLASSIFIER_TRAINING, WEIGHTS_NAME, build_classifier  # noqa: E402

BUILDERS = {**{name: build_classifier for name in CLASSIFIER_TRAINING},
            **{name: build_audio_classifier for name in CLASSIFIER_SPECS}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="*", default=list(BUILDERS),
                        help=f"which ones (default: all of {', '.join(BUILDERS)})")
    parser.add_argument("--out", type=Path, default=HERE / "classifiers", help="parent folder (default: %(default)s)")
    args = parser.parse_args(argv)
    failed = False
    for name in args.datasets:
        start = time.perf_counter()
        try:
            if name not in BUILDERS:
                raise ValueError(f"no classifier settings for {name!r}; known: {', '.join(BUILDERS)}")
            model = BUILDERS[name](name, args.out / name)
        except (FileNotFoundError, ModuleNotFoundError) as err:
            print(f"{name}: skipped: {err}")
            continue
        except ValueError as err:
            print(f"{name}: failed: {err}")
            failed = True
            continue
        size = (args.out / name / WEIGHTS_NAME).stat().st_size
        print(f"{name}: test accuracy {model.test_accuracy:.4f}, {size / 1024:.0f} kB, "
              f"{time.perf_counter() - start:.0f} s -> {args.out / name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
