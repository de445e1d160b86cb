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

``noise``: the trained model's cross-entropy on validation sentences against the
noise level, and the training-noise distribution it suggests: CDCD's time
warping (Dieleman et al. 2022) spends training where the cross-entropy changes,
with density proportional to ``dCE / dlog sigma``; the log-normal with that
density's mean and standard deviation in ``log sigma`` is the suggested
``(p_mean, p_std)``. Block ``text_noise`` (``--block`` another name).

    python benchmarks/text_recipes.py noise --run runs/wn
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import threads_and_machine  # noqa: E402
from docblock import write_block  # noqa: E402

DOC = ROOT / "docs" / "text.md"  # the user guide: steps and examples
RESULTS = ROOT / "docs" / "results" / "text.md"  # keyword, noise and temperature studies
COLUMNS = [("perplexity", "perplexity"), ("perplexity_real", "real ppl"), ("perplexity_ratio", "ratio"),
           ("grammar_rate", "parses"), ("grammar_rate_real", "real parses"), ("distinct_1", "dist-1"), ("distinct_2", "dist-2"), ("copy_rate", "copies"),
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
    from multidiff.recipes import text

    threads = text.read_config(run).threads or torch.get_num_threads()  # what evaluate sampled with
    meta = (f"\n{num} samples per figure, sampler `{first['sampler']}`, seed 0, {threads_and_machine(threads)}; "
            f"run `{run}`.\n")
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


def _run_data(run: Path):
    """``(model, config, tokenizer, prior, data)``: a run and its corpus in token ids (``text.Prepared``)."""
    from multidiff.recipes import text

    model, config, tokenizer, prior, _ = text.load_run(run)
    return model, config, tokenizer, prior, text.Prepared(config, text.load_corpus(config), tokenizer)


def _loaded(run: Path):
    """A run and what the sweeps measure it with: ``(model, config, tokenizer, prior, data, lm,
    classifier)``, ``lm`` the trigram model fit on the run's training split, ``classifier`` its
    keyword classifier (None without one)."""
    from multidiff.metrics.text import KneserNeyLM
    from multidiff.recipes import text

    model, config, tokenizer, prior, data = _run_data(run)
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
        drawn = text.draw(model, config, tokenizer, data.num_classes, num=num, seed=2, keywords=keywords,
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
            drawn = text.draw(model, config, tokenizer, prior, num=num, seed=0, temperature=t)
            samples = words(drawn["text"])
            success = "-"
            if classifier is not None:
                steered = text.draw(model, config, tokenizer, prior, num=len(keywords), seed=2, keywords=keywords,
                                     classifier=classifier, temperature=t)
                success = f"{keyword_success(words(steered['text']), [vocabulary[k] for k in keywords]):.3f}"
            held = text.draw(model, config, tokenizer, prior, num=num, seed=1, lengths=lengths, temperature=t)
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


def noise_curve(model, ids: torch.Tensor, sigmas: torch.Tensor, draws: int = 4, seed: int = 0):
    """The mean cross-entropy (nats, over all positions, pads included, as training averages it) of
    the model's posterior over the table at ``E[ids] + sigma n`` for each sigma: ``(S,)``."""
    import torch
    from torch.nn import functional as F

    from multidiff.adapters.text import token_table

    generator = torch.Generator().manual_seed(seed)
    table = token_table(model, model.sigma_data)
    x0 = table[ids]
    out = []
    with torch.no_grad():
        for sigma in sigmas.tolist():
            total = 0.0
            for _ in range(draws):
                x = x0 + sigma * torch.randn(x0.shape, generator=generator)
                logits = model.logits(x, torch.full((len(ids),), sigma))
                total += float(F.cross_entropy(logits.float().transpose(1, 2), ids))
            out.append(total / draws)
    return torch.tensor(out, dtype=torch.float64)


def warp_moments(sigmas: torch.Tensor, ce: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation in ``log sigma`` of the density ``max(dCE / dlog sigma, 0)``
    (finite differences between neighbouring sigmas, each at its interval's midpoint)."""
    log_sigma = sigmas.double().log()
    slope = ((ce[1:] - ce[:-1]) / (log_sigma[1:] - log_sigma[:-1])).clamp(min=0)
    weight = slope * (log_sigma[1:] - log_sigma[:-1])
    mid = (log_sigma[1:] + log_sigma[:-1]) / 2
    mean = float((weight * mid).sum() / weight.sum())
    return mean, float(((weight * (mid - mean) ** 2).sum() / weight.sum()).sqrt())


def noise(run: Path, num: int) -> str:
    import math

    import torch

    from multidiff.recipes import text

    model, config, _, _, data = _run_data(run)
    ids = data.splits["validation"]["ids"]
    ids = ids[text.held_out_pick(len(ids), num, 0)]
    sigmas = torch.logspace(math.log10(0.2), math.log10(40.0), 24, dtype=torch.float64)
    with text.threads_of(config):
        ce = noise_curve(model.eval(), ids, sigmas)
    mean, std = warp_moments(sigmas, ce)
    trained = torch.distributions.Normal(config.p_mean, config.p_std)
    easy = sigmas[ce < 0.01 * ce.max()]
    easy_share = float(trained.cdf(torch.tensor(math.log(float(easy.max()))))) if len(easy) else 0.0
    rows = ["| sigma | cross-entropy (nats) |", "| --- | --- |"]
    rows += [f"| {float(s):.3g} | {float(c):.3f} |" for s, c in zip(sigmas[::2], ce[::2])]
    return "\n".join(rows) + (
        f"\n\n{len(ids)} validation sentences drawn at random, 4 noise draws per sigma; run `{run}` "
        f"(trained with p_mean {config.p_mean:g}, p_std {config.p_std:g}).\n\n"
        f"Density proportional to dCE / dlog sigma: mean {mean:.2f}, standard deviation {std:.2f} in log sigma "
        f"(sigma {math.exp(mean):.2f}). The run's training distribution put {easy_share:.0%} of its sigmas "
        f"where the cross-entropy is under 1% of its maximum.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=["steps", "examples", "keyword", "temperature", "noise"])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25, 100])
    parser.add_argument("--scales", type=float, nargs="+", default=[0, 2, 4, 8, 16, 32])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.9, 0.8, 0.7, 0.6, 0.5])
    parser.add_argument("--num", type=int, default=500)
    parser.add_argument("--block", default=None, help="temperature, noise: the docs block to write "
                        "(default text_temperature, text_noise)")
    args = parser.parse_args()
    if args.task == "steps":
        write_block(DOC, "text_steps", steps(args.run, args.steps, args.num), append_if_missing=True)
    elif args.task == "examples":
        write_block(DOC, "text_examples", examples(args.run), append_if_missing=True)
    elif args.task == "keyword":
        write_block(RESULTS, "text_keyword", keyword(args.run, args.scales, args.num), append_if_missing=True)
    elif args.task == "noise":
        write_block(RESULTS, args.block or "text_noise", noise(args.run, min(args.num, 1000)), append_if_missing=True)
    else:
        write_block(RESULTS, args.block or "text_temperature", temperature(args.run, args.temperatures, args.num),
                    append_if_missing=True)


if __name__ == "__main__":
    main()
