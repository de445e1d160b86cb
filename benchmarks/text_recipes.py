"""Figures of the text domain, written into docs/text.md.

    python benchmarks/text_recipes.py steps --run runs/wn          # metrics at 10, 25 and 100 sampler steps
    python benchmarks/text_recipes.py examples --run runs/wn       # 20 unedited samples and control examples
    python benchmarks/text_recipes.py keyword --run runs/wn        # keyword scale sweep: success vs perplexity
    python benchmarks/text_recipes.py temperature --run runs/wn    # sampling temperature: fluency vs diversity

``steps``: the run's full evaluation (``multidiff eval``: perplexity beside the
real-text floor, distinct-n, copies, rounding error, length / keyword / style
control, infilling, likelihood) with the default sampler at 10, 25 and 100
steps. Block ``text_steps``.

``examples``: the first 20 samples of seed 0 exactly as drawn, then length,
keyword, style and template examples. Block ``text_examples``.

``keyword``: keyword success and the samples' perplexity against the guidance
scale (1 / Diffusion-LM's fluency weight). Block ``text_keyword``.

``temperature``: perplexity, distinct-n, copies, sentence length and keyword
success against the sampling temperature of the word posteriors, with the first
samples of each. Block ``text_temperature`` (``--block`` another name, for a
held-out run).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from docblock import write_block  # noqa: E402

DOC = ROOT / "docs" / "text.md"
COLUMNS = [("perplexity", "perplexity"), ("perplexity_real", "real ppl"), ("perplexity_ratio", "ratio"),
           ("distinct_1", "dist-1"), ("distinct_2", "dist-2"), ("copy_rate", "copies"),
           ("rounding_error", "rounding err."), ("length_accuracy", "length exact"),
           ("keyword_success", "keyword"), ("keyword_success_unguided", "keyword unguided"),
           ("style_accuracy", "style"), ("infill_accuracy", "infill"), ("nll_bits_per_token", "NLL bits/token"),
           ("sample_seconds_per_sentence", "s / sentence")]


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def steps(run: Path, values: list[int], num: int) -> str:
    from multidiff.recipes import text

    rows = []
    for k in values:
        start = time.perf_counter()
        report = text.evaluate(run, num=num, steps=k)
        report["wall_seconds"] = time.perf_counter() - start
        rows.append(report)
        print(json.dumps(report), flush=True)
    return steps_block(rows, run, num)


def steps_block(rows: list[dict], run: Path, num: int) -> str:
    """The ``text_steps`` block from the evaluation reports (one per step count)."""
    import torch

    head = "| steps | " + " | ".join(label for _, label in COLUMNS) + " |\n"
    head += "| --- " * (len(COLUMNS) + 1) + "|\n"
    body = "".join(f"| {r['sample_steps']} | " + " | ".join(_fmt(r.get(key, "-")) for key, _ in COLUMNS) + " |\n"
                   for r in rows)
    first = rows[0]
    floor = (f"\nReal-text floors (held-out test sentences): distinct-1 {first['distinct_1_real']:.3g}, distinct-2 "
             f"{first['distinct_2_real']:.3g}, copies of training sentences {first['copy_rate_real']:.3g}, "
             f"{first['mean_words_real']:.2f} words a sentence (samples: {first['mean_words']:.2f}); "
             + (f"style classifier on real sentences {first['style_accuracy_real']:.3g}; "
                if "style_accuracy_real" in first else "")
             + f"the trigram model's own held-out cross-entropy {first['ngram_bits_per_token']:.2f} bits/token"
             + (f" ({first['nll_ngram_bits_per_token']:.2f} on the {first['nll_num']} sentences the NLL column "
                f"scores, {first['nll_ode_steps']} ODE steps)" if "nll_ngram_bits_per_token" in first else "")
             + ".\n")
    meta = (f"\n{num} samples per figure, sampler `{first['sampler']}`, seed 0, {torch.get_num_threads()} threads, "
            f"{platform.processor() or platform.machine()}; run `{run}`.\n")
    return head + body + floor + meta


def examples(run: Path) -> str:
    from multidiff.recipes import text

    drawn = text.sample(run, num=20, seed=0)
    out = ["Twenty unedited samples (seed 0, the run's default sampler and steps):\n", "```text"]
    out += drawn["text"] + ["```", ""]
    config = text.read_config(run)
    longest = min(9, config.length)
    for title, options in (("exactly 5 words", {"length": 5}), (f"exactly {longest} words", {"length": longest}),
                           ("keyword `water`", {"keyword": "water"}), ("keyword `music`", {"keyword": "music"})):
        drawn = text.sample(run, num=5, seed=1, **options)
        out += [f"{title}:\n", "```text"] + drawn["text"] + ["```", ""]
    if config.conditional and config.dataset == "wordnet_fortunes":
        for label, name in ((0, "WordNet style"), (1, "fortune style")):
            drawn = text.sample(run, num=5, seed=2, label=label, guidance=3.0)
            out += [f"{name} (label {label}, guidance 3):\n", "```text"] + drawn["text"] + ["```", ""]
    for template in ("the ___ sat on the ___", "he ___ the ___ in the morning"):
        drawn = text.infill(run, template, num=5, seed=3)
        out += [f"template `{template}`:\n", "```text"] + drawn["text"] + ["```", ""]
    return "\n".join(out) + "\n"


def _loaded(run: Path):
    """A run and what the sweeps measure it with: ``(model, config, tokenizer, prior, data, lm,
    classifier)``, ``lm`` the trigram model fit on the run's training split, ``classifier`` its
    keyword classifier (None without one)."""
    from multidiff.metrics.text import KneserNeyLM
    from multidiff.recipes import text

    model, config, tokenizer, prior, _ = text.load_run(run)
    data = text.Prepared(config, text.load_corpus(config), tokenizer)
    lm = KneserNeyLM(order=3).fit([t.split() for t in data.splits["train"]["text"]])
    return model, config, tokenizer, prior, data, lm, text.load_classifier(run, model.schedule, "cpu")


def keyword(run: Path, scales: list[float], num: int) -> str:
    import torch

    from multidiff.metrics.text import keyword_success
    from multidiff.recipes import text

    model, config, tokenizer, _, data, lm, classifier = _loaded(run)
    keywords = text.keyword_choices(data.splits["train"]["ids"], tokenizer, num, torch.Generator().manual_seed(0))
    vocabulary = tokenizer.vocabulary()
    rows = ["| keyword scale | success | perplexity |", "| --- | --- | --- |"]
    for scale in scales:
        drawn = text._draw(model, config, tokenizer, data.num_classes, num=num, seed=2, keywords=keywords,
                           classifier=classifier, keyword_scale=scale)
        words = [t.split() for t in drawn["text"]]
        success = keyword_success(words, [vocabulary[k] for k in keywords])
        rows.append(f"| {scale:g} | {success:.3f} | {lm.perplexity(words):.0f} |")
        print(rows[-1], flush=True)
    return "\n".join(rows) + f"\n\n{num} keywords (ranks 50-1000), sampler `{config.sampler}`, " \
                             f"{config.sample_steps} steps; run `{run}`.\n"


def temperature(run: Path, temperatures: list[float], num: int, shown: int = 5) -> str:
    import torch

    from multidiff.metrics.text import copy_rate, distinct_n, keyword_success
    from multidiff.recipes import text

    model, config, tokenizer, prior, data, lm, classifier = _loaded(run)
    words = lambda texts: [t.split() for t in texts]  # noqa: E731
    train, test = words(data.splits["train"]["text"]), words(data.splits["test"]["text"])
    real, real_ppl = test[:num], lm.perplexity(test)
    keywords = text.keyword_choices(data.splits["train"]["ids"], tokenizer, min(num, 200),
                                    torch.Generator().manual_seed(0))
    vocabulary = tokenizer.vocabulary()
    train_lengths = (data.splits["train"]["ids"] != tokenizer.pad_id).sum(1)
    lengths = train_lengths[torch.randint(len(train_lengths), (num,), generator=torch.Generator().manual_seed(1))]
    rows = ["| temperature | perplexity | ratio | dist-1 | dist-2 | copies | words | perplexity at the data's lengths "
            "| keyword |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    shown_samples = []
    with text.threads_of(config):
        for t in temperatures:
            drawn = text._draw(model, config, tokenizer, prior, num=num, seed=0, temperature=t)
            samples = words(drawn["text"])
            success = "-"
            if classifier is not None:
                steered = text._draw(model, config, tokenizer, prior, num=len(keywords), seed=2, keywords=keywords,
                                     classifier=classifier, temperature=t)
                success = f"{keyword_success(words(steered['text']), [vocabulary[k] for k in keywords]):.3f}"
            held = text._draw(model, config, tokenizer, prior, num=num, seed=1, lengths=lengths, temperature=t)
            ppl = lm.perplexity(samples)
            rows.append(f"| {t:g} | {ppl:.0f} | {ppl / real_ppl:.2f} | {distinct_n(samples, 1):.3f} | "
                        f"{distinct_n(samples, 2):.3f} | {copy_rate(samples, train):.3f} | "
                        f"{sum(map(len, samples)) / num:.2f} | {lm.perplexity(words(held['text'])):.0f} | {success} |")
            print(rows[-1], flush=True)
            shown_samples += [f"temperature {t:g} (free length; at the data's lengths):", "", "```text",
                              *drawn["text"][:shown], "```", "", "```text", *held["text"][:shown], "```", ""]
    rows.append(f"| real (held out) | {real_ppl:.0f} | 1 | {distinct_n(real, 1):.3f} | {distinct_n(real, 2):.3f} | "
                f"{copy_rate(real, train):.3f} | {sum(map(len, real)) / len(real):.2f} | {real_ppl:.0f} | - |")
    meta = (f"\n{num} samples per row (keyword: {len(keywords)}, scale {config.keyword_scale:g}), sampler "
            f"`{config.sampler}`, {config.sample_steps} steps, seed 0; run `{run}` ({config.dataset}).\n\n"
            f"The first {shown} samples of each row, unedited:\n\n")
    return "\n".join(rows) + "\n" + meta + "\n".join(shown_samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=["steps", "examples", "keyword", "temperature"])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25, 100])
    parser.add_argument("--scales", type=float, nargs="+", default=[0, 2, 4, 8, 16, 32])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.9, 0.8, 0.7, 0.6, 0.5])
    parser.add_argument("--num", type=int, default=500)
    parser.add_argument("--block", default="text_temperature", help="temperature: the docs block to write")
    args = parser.parse_args()
    if args.task == "steps":
        write_block(DOC, "text_steps", steps(args.run, args.steps, args.num), append_if_missing=True)
    elif args.task == "examples":
        write_block(DOC, "text_examples", examples(args.run), append_if_missing=True)
    elif args.task == "keyword":
        write_block(DOC, "text_keyword", keyword(args.run, args.scales, args.num), append_if_missing=True)
    else:
        write_block(DOC, args.block, temperature(args.run, args.temperatures, args.num), append_if_missing=True)


if __name__ == "__main__":
    main()
