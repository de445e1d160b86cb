"""Figures of the audio domain, written into docs/audio.md.

    python benchmarks/audio_recipes.py roundtrip                  # wav -> mel -> Griffin-Lim -> wav (minutes)
    python benchmarks/audio_recipes.py representations            # 16 kHz mels, linear, both mel inverses
    python benchmarks/audio_recipes.py mel_inverse                # the inverses under band noise
    python benchmarks/audio_recipes.py spoken_digits --run runs/sd  # a trained run: sweeps and pictures
    python benchmarks/audio_recipes.py notes --run runs/notes
    python benchmarks/audio_recipes.py inpainting --run runs/sd
    python benchmarks/audio_recipes.py gap_lengths --run runs/sd,runs/sd1 --seeds 0,1

``roundtrip``: spectral convergence and log-spectral distance of real clips
decoded from their own log-mel spectrogram, against the Griffin-Lim iteration
count, for each recipe's spectrogram: held-out spoken digits (TTS), the ten
Asterisk recordings (a human speaker) and held-out notes. It also reports
the same figures for Griffin-Lim from the *linear* magnitude, which separates
what the mel filterbank loses from what phase recovery loses. Block
``audio_roundtrip``.

``spoken_digits`` / ``notes``: the run's metrics at its defaults, then a guidance
sweep and a sampler-steps sweep (500 samples for digits, 300 for notes, one
seed), the sampling cost, a spectrogram picture (docs/img/audio_<recipe>.png)
and ten example WAVs (docs/audio/<recipe>/). Blocks ``audio_<recipe>``.

``inpainting``: the digits run fills held-out clips given no label (the
CLI's ``--region gap`` and ``continue``, then centred gaps of 50-300 ms),
beside silence, a straight line across the gap and the same network blind to
the context (replacement only); RMS and log-spectral distance inside the
hidden frames and the bundled classifier's accuracy on the decoded clips.
Ten gap fills with their originals go to docs/audio/spoken_digits_inpaint/.
Block ``audio_inpainting``.

``gap_lengths``: how much of the word a gap hides, against how often the
fill is recognised. For centred gaps of 50-300 ms (and ``--region gap``),
pooled over the runs and clip draws given: how often the run names the digit
from the known frames, how often its fill is recognised, the same fill told
each clip's true digit (an oracle), the straight line and the original clip,
and how many words still sound after the gap. Block ``audio_gap_lengths``
in docs/results/audio.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from docblock import write_block  # noqa: E402

import torch  # noqa: E402

from multidiff.adapters import audio as A  # noqa: E402
from multidiff.data.audio import fitted_clips, load_asterisk_digits, load_audio_dataset  # noqa: E402
from multidiff.recipes import audio as R  # noqa: E402

DOC = ROOT / "docs" / "audio.md"
IMG = ROOT / "docs" / "img"
SOUNDS = ROOT / "docs" / "audio"
ITERS = (4, 16, 32, 64, 128)


def machine() -> str:
    return (f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
            f"{time.strftime('%Y-%m-%d')}")


def table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def roundtrip(args) -> str:
    digits = R.SpokenDigitsConfig().spectrogram
    notes = R.NotesConfig().spectrogram
    sets = []
    data = load_audio_dataset("spoken_digits")
    sets.append(("spoken digits, held-out voices (100)", digits, fitted_clips(
        {"audio": data.test["audio"][:100]}, data.sample_rate, digits)))
    real = load_asterisk_digits()
    sets.append(("Asterisk recordings (10)", digits, fitted_clips(real, 16000, digits)))
    note_data = load_audio_dataset("notes")
    pick = torch.randperm(len(note_data.test["audio"]), generator=torch.Generator().manual_seed(0))[:100]
    sets.append(("notes, held-out velocity (100)", notes, fitted_clips(
        {"audio": [note_data.test["audio"][i] for i in pick]}, note_data.sample_rate, notes)))
    rows = []
    for name, spec, waves in sets:
        x = A.encode(waves, spec)
        linear = A.stft_magnitude(waves, spec) ** 2
        for iters in ITERS:
            start = time.perf_counter()
            from_mel = A.decode(x, spec, iters=iters)  # through the recipe's own (clipped, normalised) spectrogram
            seconds = time.perf_counter() - start
            from_linear = A.griffin_lim(linear, spec, iters=iters)
            rows.append([name, iters, float(A.spectral_convergence(waves, from_mel, spec).mean()),
                         float(A.log_spectral_distance(waves, from_mel, spec).mean()),
                         float(A.spectral_convergence(waves, from_linear, spec).mean()),
                         float(A.log_spectral_distance(waves, from_linear, spec).mean()),
                         seconds / (len(waves) * spec.clip_seconds)])
        print(rows[-1], flush=True)
    header = ["clips", "GL iterations", "SC from the recipe's spectrogram", "LSD (dB)", "SC from exact |STFT|",
              "LSD from exact (dB)", "decode s per audio s"]
    return (f"Measured on {machine()}. SC: spectral convergence (0 = the original magnitudes); LSD: log-spectral "
            f"distance. Spoken digits and Asterisk use the `spoken_digits` spectrogram ({digits.sample_rate} Hz, "
            f"n_fft {digits.n_fft}, hop {digits.hop_length}, {digits.bins} {digits.scale} bins, floored at "
            f"{digits.db_floor:g} dB); notes the `notes` one ({notes.sample_rate} Hz, n_fft {notes.n_fft}, "
            f"{notes.bins} {notes.scale} bins). The exact columns start Griffin-Lim from the unfloored linear "
            f"magnitude.\n\n" + table(header, rows))


def representations(args) -> str:
    """Which spectrogram a listener can live with: the Griffin-Lim round trip of 100 held-out spoken-digit
    clips for the old 8 kHz / 32-mel default, 16 kHz mels of a 1024-point and of a 512-point STFT, and
    16 kHz linear STFT magnitudes (what a model of the linear spectrogram would have to produce)."""
    from dataclasses import replace

    old = R.SpokenDigits8kConfig().spectrogram  # the default before #28: 8 kHz, 32 mels
    wide = R.SpokenDigitsConfig().spectrogram  # the default since: 16 kHz, n_fft 512, hop 256, 96 mels
    long = replace(wide, n_fft=1024)
    variants = [("8 kHz, n_fft 512, 32 mels (spoken_digits_8k)", old)]
    variants += [(f"16 kHz, n_fft 1024, {n} mels", replace(long, n_mels=n)) for n in (64, 80, 128)]
    variants += [(f"16 kHz, n_fft 512, {n} mels" + (" (spoken_digits)" if n == wide.n_mels else ""),
                  replace(wide, n_mels=n)) for n in (64, 80, 96, 128)]
    variants += [(f"16 kHz, n_fft {s.n_fft}, linear", replace(s, scale="linear")) for s in (wide, long)]
    data = load_audio_dataset("spoken_digits")
    rows = []
    for name, spec in variants:
        waves = fitted_clips({"audio": data.test["audio"][:100]}, data.sample_rate, spec)
        inverses = A.MEL_INVERSES if spec.scale == "mel" else ("-",)
        for inverse, iters in [(inverse, iters) for inverse in inverses for iters in (32, 64)]:
            decoder = spec if inverse == "-" else replace(spec, mel_inverse=inverse)
            start = time.perf_counter()
            decoded = A.decode(A.encode(waves, decoder), decoder, iters=iters)
            seconds = time.perf_counter() - start
            rows.append([name, spec.bins, inverse, iters, float(A.spectral_convergence(waves, decoded, spec).mean()),
                         float(A.log_spectral_distance(waves, decoded, spec).mean()),
                         seconds / (len(waves) * spec.clip_seconds)])
            print(rows[-1], flush=True)
    header = ["representation", "model channels", "mel inverse", "GL iterations", "spectral convergence", "LSD (dB)",
              "decode s per audio s"]
    return (f"Measured on {machine()}: 100 held-out spoken-digit clips (voices not in training), each through "
            f"wav -> representation (floored at {wide.db_floor:g} dB) -> the mel inverse where there are mels "
            f"(nnls: non-negative least squares, the default; lstsq: plain least squares, clamped) -> Griffin-Lim "
            f"-> wav; SC and LSD against the clip itself on the representation's own STFT. The target of #28 is "
            f"SC <= 0.15.\n\n" + table(header, rows))


NOISE_LEVELS = (0.0, 0.05, 0.1, 0.2)


def mel_inverse(args) -> str:
    """How the mel inverse takes small errors in the bands, as a generated spectrogram has them: 200
    held-out spoken-digit clips, Gaussian noise of each level (model units; 0.1 is 5 dB) added to
    their spectrograms, decoded by each inverse and recognised by the bundled classifier."""
    from dataclasses import replace

    from multidiff.metrics.audio import load_audio_classifier, predict_audio

    classifier, classifier_spec = load_audio_classifier("spoken_digits", train_if_missing=True)
    data = load_audio_dataset("spoken_digits")
    labels = data.test["label"][:200]
    rows = []
    for name, spec in (("16 kHz, n_fft 512, 96 mels (spoken_digits)", R.SpokenDigitsConfig().spectrogram),
                       ("8 kHz, n_fft 512, 32 mels (spoken_digits_8k)", R.SpokenDigits8kConfig().spectrogram)):
        waves = fitted_clips({"audio": data.test["audio"][:200]}, data.sample_rate, spec)
        x = A.encode(waves, spec)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        for level in NOISE_LEVELS:
            row = [name, level]
            for inverse in A.MEL_INVERSES:
                decoded = A.decode((x + level * noise).clamp(-1, 1), replace(spec, mel_inverse=inverse))
                row.append(float((predict_audio(decoded, spec.sample_rate, classifier, classifier_spec)
                                  == labels).double().mean()))
            rows.append(row)
            print(row, flush=True)
    return (f"Measured on {machine()}: 200 held-out spoken-digit clips, Gaussian noise added to their normalised "
            f"log-mel spectrograms (0.1 model units is 5 dB), decoded by each mel inverse and Griffin-Lim, and "
            f"recognised by the bundled digit classifier.\n\n"
            + table(["spectrogram", "noise", "accuracy after nnls", "accuracy after lstsq"], rows))


def _eval(run: Path, **options) -> dict:
    report = R.evaluate(run, **options)
    print(json.dumps({k: report.get(k) for k in ("guidance", "sample_steps", "classifier_accuracy", "frechet",
                                                 "frechet_floor", "pitch_within_50_cents")}), flush=True)
    return report


SAMPLER_SWEEP = (("unipc", 24), ("heun", 12), ("euler_ancestral", 12))  # deterministic ones beside the ancestral


def recipe_figures(args) -> str:
    run = Path(args.run)
    config = R.read_config(run)
    name = config.recipe
    default = json.loads((run / "eval.json").read_text())
    rows = []
    guidances = (1.0, 1.5, 2.0, 3.0, 4.0)
    for g in guidances:
        rep = default if g == config.guidance else _eval(run, guidance=g)
        rows.append(["guidance", g, config.sample_steps, rep.get("classifier_accuracy"), rep.get("frechet"),
                     rep.get("frechet_over_floor"), rep.get("pitch_within_50_cents", ""),
                     rep.get("instrument_accuracy", "")])
    for steps in sorted({6, 12, 24, 48} - {config.sample_steps}):
        rep = _eval(run, steps=steps)
        rows.append(["steps", config.guidance, steps, rep.get("classifier_accuracy"), rep.get("frechet"),
                     rep.get("frechet_over_floor"), rep.get("pitch_within_50_cents", ""),
                     rep.get("instrument_accuracy", "")])
    for sampler, steps in SAMPLER_SWEEP:
        if sampler != config.sampler:
            rep = _eval(run, sampler=sampler, steps=steps)
            rows.append([f"sampler {sampler}", config.guidance, steps, rep.get("classifier_accuracy"),
                         rep.get("frechet"), rep.get("frechet_over_floor"), rep.get("pitch_within_50_cents", ""),
                         rep.get("instrument_accuracy", "")])
    drawn = R.sample(run, num=20, seed=1)
    IMG.mkdir(parents=True, exist_ok=True)
    A.save_spectrograms(drawn["spectrograms"], IMG / f"audio_{name}.png", titles=R.titles(drawn, drawn["class_names"]),
                        spec=config.spectrogram)
    folder = SOUNDS / name
    shutil.rmtree(folder, ignore_errors=True)
    for i in range(10):
        A.save_wav(drawn["samples"][i], folder / f"{i:02d}-{drawn['class_names'][int(drawn['labels'][i])].replace(' ', '_')}.wav",
                   config.sample_rate)
    header = ["sweep", "guidance", "sampler steps", "classifier accuracy", "Frechet", "Frechet / floor",
              "f0 within 50 cents", "instrument"]
    keys = ("spectrogram", "num", "sampler", "sample_steps", "guidance", "classifier_accuracy",
            "classifier_test_accuracy", "frechet", "frechet_floor", "frechet_over_floor", "frechet_vocoder_floor",
            "frechet_vocoder_floor_over_floor", "classifier_accuracy_vocoder_floor", "round_trip_spectral_convergence",
            "vocoder_spectral_convergence", "pitch_within_50_cents", "pitch_median_abs_cents", "instrument_accuracy",
            "network_seconds_per_audio_second", "griffin_lim_seconds_per_audio_second", "threads", "train_seconds",
            "steps")
    summary = "\n".join(f"- `{k}`: {default[k]:.4g}" if isinstance(default.get(k), float) else f"- `{k}`: {default.get(k)}"
                        for k in keys if k in default)
    return (f"Run `{name}` measured on {machine()}; its eval.json at the defaults:\n\n{summary}\n\n"
            f"Sweeps (one seed each, the run's sampler `{config.sampler}` unless named; the floor is the "
            f"real-vs-real Frechet distance):\n\n" + table(header, rows)
            + f"\n![samples](img/audio_{name}.png)\n")


GAP_SECONDS = (0.05, 0.1, 0.2, 0.3)


def inpainting(args) -> str:
    """Fills of held-out clips beside the baselines: ``--region gap`` and ``continue`` as the CLI runs
    them, then centred gaps of 50-300 ms; per method the RMS (model units) and log-spectral
    distance inside the hidden frames and the bundled classifier's accuracy on the decoded clip."""
    run = Path(args.run)
    config = R.read_config(run)
    spec = config.spectrogram
    tasks = [(f"--region {region}", dict(region=region)) for region in A.INPAINT_TASKS]
    tasks += [(f"{round(1000 * s)} ms gap", dict(mask=A.gap_mask(1, spec, s))) for s in GAP_SECONDS]
    rows, reports = [], {}
    for name, task in tasks:
        report = R.evaluate_inpainting(run, num=args.num, seed=0, **task)
        reports[name] = report
        for method, m in report["methods"].items():
            if method == "original_decoded":
                continue
            rows.append([name, round(report["hidden_seconds"], 3), method, m["rms"], m["lsd_db"], m["accuracy"]])
        print(json.dumps({name: report["methods"]}), flush=True)
    filled = R.inpaint_test(run, num=10, region="gap", seed=1)
    IMG.mkdir(parents=True, exist_ok=True)
    R.write_samples(filled, Path(args.tmp) / "inpaint", run, npz=False)
    shutil.copy(Path(args.tmp) / "inpaint.png", IMG / "audio_inpaint.png")
    folder = SOUNDS / "spoken_digits_inpaint"
    shutil.rmtree(folder, ignore_errors=True)
    for i in range(10):
        digit = filled["class_names"][int(filled["labels"][i])]
        A.save_wav(filled["samples"][i], folder / f"{i:02d}-{digit}-filled.wav", spec.sample_rate)
        A.save_wav(filled["reference_audio"][i], folder / f"{i:02d}-{digit}-original.wav", spec.sample_rate)
    gap = reports["--region gap"]
    if "inferred_label_accuracy" in gap:
        label = (f"no label given: `model` is guided toward the digit the run infers from the known frames (right "
                 f"in {gap['inferred_label_accuracy']:.0%} of the `--region gap` clips and "
                 f"{reports['--region continue']['inferred_label_accuracy']:.0%} of the `continue` ones), `model, "
                 f"no label` fills with the null class")
    else:
        label = "no label"
    start = "pure noise"
    if config.inpaint_start_sigma:
        start = (f"the straight line noised to sigma {config.inpaint_start_sigma:g} (`model from noise`: from "
                 f"pure noise)")
    return (f"Measured on {machine()} with the run in `{run}` ({config.recipe}, {spec.bins} {spec.scale} bins), "
            f"{args.num} held-out clips (voices never trained on), {label}, the run's sampler and steps; `model` "
            f"starts from {start}. RMS: "
            f"model units inside the hidden frames; LSD: log-spectral distance (dB) inside them; accuracy: the "
            f"bundled classifier on the decoded clip against its true digit (`original`: the real clip). "
            f"`--region gap` fill / linear interpolation RMS: {gap['rms_over_linear_interpolation']:.2f}.\n\n"
            + table(["task", "hidden s", "method", "RMS", "LSD (dB)", "accuracy"], rows)
            + "\n![inpainting](img/audio_inpaint.png)\n")


GAP_STUDY = (0.05, 0.1, 0.15, 0.2, "gap", 0.3)
WORD_DB = 30.0  # a frame within this many dB of the clip's loudest is part of the word


def sounds_after_gap(reference: torch.Tensor, mask: torch.Tensor, spec) -> torch.Tensor:
    """``(B,)`` bool: a frame after the last hidden one is within :data:`WORD_DB` of the clip's loudest."""
    loudness = reference[:, 0].amax(1)  # (B, T) model units; 2 units span db_ceiling - db_floor
    near = loudness >= loudness.amax(1, keepdim=True) - 2 * WORD_DB / (spec.db_ceiling - spec.db_floor)
    hidden = mask[:, 0, 0] == 0  # (B, T)
    last = torch.arange(spec.frames).expand_as(hidden).masked_fill(~hidden, -1).amax(1)  # (B,)
    after = torch.arange(spec.frames)[None] > last[:, None]
    return (near & after).any(1)


def gap_lengths(args) -> str:
    """Recognition of gap fills against gap length, beside how often the digit can be named from the known
    frames, pooled over ``--run`` (comma-separated) and ``--seeds`` (clip draws)."""
    from multidiff.metrics.audio import load_audio_classifier, predict_audio

    runs = args.run.split(",")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    classifier, classifier_spec = load_audio_classifier("spoken_digits")
    rows = []
    for length in GAP_STUDY:
        tally: dict[str, list] = {}
        for run in runs:
            spec = R.read_config(run).spectrogram
            task = dict(region="gap") if length == "gap" else dict(mask=A.gap_mask(1, spec, length))
            for seed in seeds:
                filled = R.inpaint_test(run, num=args.num, seed=seed, **task)
                told = R.inpaint_test(run, num=args.num, seed=seed, true_label=True, **task)
                labels, mask, reference = filled["labels"], filled["mask"], filled["reference"]

                def recognised(waves):
                    return (predict_audio(waves, spec.sample_rate, classifier, classifier_spec) == labels).tolist()

                named = (filled["inferred_labels"] == labels).tolist()
                fill = recognised(filled["samples"])
                after = sounds_after_gap(reference, mask, spec).tolist()
                hidden = float((mask == 0).float().sum(-1).mean()) * spec.hop_length / spec.sample_rate  # seconds
                for key, values in (
                        ("named", named), ("fill", fill),
                        ("told", recognised(told["samples"])),
                        ("line", recognised(A.decode(A.interpolate_frames(reference, mask), spec, seed=seed))),
                        ("original", recognised(filled["reference_audio"])), ("after", after),
                        ("named_after", [n for n, a in zip(named, after) if a]),
                        ("named_ended", [n for n, a in zip(named, after) if not a])):
                    tally.setdefault(key, []).extend(values)
                print(json.dumps({"run": run, "seed": seed, "gap": length,
                                  "fill": sum(fill) / args.num,
                                  "named": sum(named) / args.num}), flush=True)

        def share(key):
            values = tally[key]
            return round(sum(values) / len(values), 3) if values else None

        rows.append(["`--region gap`" if length == "gap" else f"{round(1000 * length)} ms",
                     round(hidden, 3), share("after"), share("named"), share("named_after"),
                     share("named_ended"), share("fill"), share("told"), share("line"), share("original")])
    clips = args.num * len(runs) * len(seeds)
    return (f"Measured on {machine()}: runs {', '.join(f'`{run}`' for run in runs)}, clip draws "
            f"{', '.join(map(str, seeds))}, {args.num} held-out clips each ({clips} per row). Word after the gap: a "
            f"frame after the hidden ones within {WORD_DB:g} dB of the clip's loudest. Named: the run's "
            f"`infer_labels` from the known frames is the true digit (split by whether the word sounds after the "
            f"gap). Recognised: the bundled classifier hears the true digit in the decoded clip; `fill` is the "
            f"default fill (guided toward the named digit), `told` the same fill guided toward the true digit.\n\n"
            + table(["gap", "hidden s", "word after the gap", "named", "named: word after", "named: word ended",
                     "recognised: fill", "recognised: told", "recognised: line", "recognised: original"], rows))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("roundtrip", "representations", "mel_inverse", "spoken_digits", "notes",
                                         "inpainting", "gap_lengths"))
    parser.add_argument("--run", help="the trained run folder")
    parser.add_argument("--tmp", default="/tmp/multidiff-audio-bench")
    parser.add_argument("--num", type=int, default=200, help="inpainting: held-out clips per task")
    parser.add_argument("--seeds", default="0,1", help="gap_lengths: the clip draws")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.what not in ("roundtrip", "representations", "mel_inverse") and not args.run:
        parser.error(f"{args.what} needs --run DIR")
    block = {"roundtrip": roundtrip, "representations": representations, "mel_inverse": mel_inverse,
             "spoken_digits": recipe_figures,
             "notes": recipe_figures, "inpainting": inpainting, "gap_lengths": gap_lengths}[args.what](args)
    print(block)
    if not args.no_write:
        name = {"roundtrip": "audio_roundtrip", "inpainting": "audio_inpainting"}.get(args.what, f"audio_{args.what}")
        results = ("audio_roundtrip", "audio_representations", "audio_mel_inverse", "audio_gap_lengths")
        page = ROOT / "docs" / "results" / "audio.md" if name in results else DOC
        write_block(page, name, block, append_if_missing=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
