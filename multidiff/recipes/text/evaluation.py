"""The figures of a text run's eval.json, each beside its real-text floor."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch.nn import functional as F

from ...adapters.text import (TextTokenizer, embed, rounding_error,
                             token_table)
from ...core.likelihood import ode_log_likelihood
from ...core.precond import Precond
from ..common import threads_of
from .model import NLL_ODE_STEPS, Prepared, TextConfig, is_conditional, load_classifier, load_corpus
from .sampling import _device, _infill_test, draw, held_out_pick, load_run



# ---------------------------------------------------------------- evaluation


def evaluate(run_dir: str | os.PathLike, *, num: int | None = None, sampler: str | None = None,
             steps: int | None = None, seed: int = 0, progress: bool = False, guidance: float | None = None,
             temperature: float | None = None) -> dict:
    """The metrics of fresh samples (see the module docstring), as a JSON-able dict (``temperature``:
    the sampling temperature, default the run's)."""
    model, config, tokenizer, _, _ = load_run(run_dir, device=_device(run_dir))
    data = Prepared(config, load_corpus(config), tokenizer)
    with threads_of(config):
        return _evaluate(run_dir, config, data, model, num=num, sampler=sampler, steps=steps, seed=seed,
                         guidance=guidance, temperature=temperature, progress=progress)


def _evaluate(run_dir, config: TextConfig, data: Prepared, model: Precond, *, num: int | None = None,
              sampler: str | None = None, steps: int | None = None, seed: int = 0, guidance: float | None = None,
              temperature: float | None = None, progress: bool = False, nll_num: int = 500,
              control_num: int = 200) -> dict:
    from ...metrics.text import (LINK_GRAMMAR_MISSING, KneserNeyLM, copy_rate, distinct_n, grammar_rate,
                                 keyword_success, length_accuracy, link_parser_available)

    num = config.num_eval if num is None else num
    if num < 2:
        raise ValueError(f"num must be >= 2, got {num}")
    tokenizer, splits = data.tokenizer, data.splits
    sampler = config.sampler if sampler is None else sampler
    steps = config.sample_steps if steps is None else steps
    temperature = config.temperature if temperature is None else temperature
    options = dict(sampler=sampler, steps=steps, temperature=temperature, progress=progress)
    words = lambda texts: [t.split() for t in texts]  # noqa: E731
    train_words, test_words = words(splits["train"]["text"]), words(splits["test"]["text"])
    lm = KneserNeyLM(order=3).fit(train_words)
    real = [test_words[i] for i in held_out_pick(len(test_words), num, seed)]
    report = {"recipe": config.recipe, "dataset": config.dataset, "num": num, "sampler": sampler,
              "sample_steps": steps, "temperature": temperature, "seed": seed, "vocab_size": tokenizer.vocab_size,
              "train_sentences": len(train_words), "dropped_sentences": data.dropped}

    drawn = draw(model, config, tokenizer, data.class_prior, num=num, seed=seed, **options)
    samples = words(drawn["text"])
    report.update(perplexity=lm.perplexity(samples), perplexity_real=lm.perplexity(test_words),
                  distinct_1=distinct_n(samples, 1), distinct_2=distinct_n(samples, 2),
                  distinct_1_real=distinct_n(real, 1), distinct_2_real=distinct_n(real, 2),
                  copy_rate=copy_rate(samples, train_words), copy_rate_real=copy_rate(real, train_words),
                  rounding_error=float(rounding_error(drawn["x"], token_table(model, config.sigma_data).cpu()).mean()),
                  mean_words=sum(map(len, samples)) / num, mean_words_real=sum(map(len, real)) / len(real),
                  sample_seconds_per_sentence=drawn["seconds"] / num)
    report["perplexity_ratio"] = report["perplexity"] / report["perplexity_real"]
    # the fluency check of record: a trigram cannot see salad made of locally plausible pairs, a parser can
    if link_parser_available():
        report.update(grammar_rate=grammar_rate(samples), grammar_rate_real=grammar_rate(real))
    else:
        report["grammar_note"] = LINK_GRAMMAR_MISSING

    # length control: lengths drawn from the held-out sentences' own
    generator = torch.Generator().manual_seed(seed)
    test_lengths = (splits["test"]["ids"] != tokenizer.pad_id).sum(1)
    num = min(num, control_num)  # the controls: fewer samples, each figure still within a few points
    report["control_num"] = num
    lengths = test_lengths[torch.randint(len(test_lengths), (num,), generator=generator)]
    drawn = draw(model, config, tokenizer, data.class_prior, num=num, seed=seed + 1, lengths=lengths, **options)
    report.update(length_accuracy=length_accuracy(words(drawn["text"]), lengths.tolist()),
                  length_perplexity=lm.perplexity(words(drawn["text"])))

    classifier = load_classifier(Path(run_dir), model.schedule, next(model.parameters()).device)
    if classifier is not None:
        keywords = keyword_choices(splits["train"]["ids"], tokenizer, num, generator)
        drawn = draw(model, config, tokenizer, data.class_prior, num=num, seed=seed + 2, keywords=keywords,
                     classifier=classifier, **options)
        vocabulary = tokenizer.vocabulary()
        report.update(keyword_success=keyword_success(words(drawn["text"]), [vocabulary[k] for k in keywords]),
                      keyword_perplexity=lm.perplexity(words(drawn["text"])), keyword_scale=config.keyword_scale)
        unguided = draw(model, config, tokenizer, data.class_prior, num=num, seed=seed + 2, **options)
        report["keyword_success_unguided"] = keyword_success(words(unguided["text"]), [vocabulary[k] for k in keywords])

    if is_conditional(config, data.num_classes):
        report.update(style_metrics(config, data, model, lm_order=3, num=num, seed=seed, guidance=guidance,
                                    **options))

    filled = _infill_test(model, config, data, num=min(num, len(splits["test"]["ids"])), region="random", seed=seed,
                          **options)
    report["infill_accuracy"] = filled["infill_accuracy"]
    nll = nll_bits_per_token(model, config, data, num=nll_num, seed=seed)
    scored = [test_words[i] for i in nll.pop("nll_pick")]
    report.update(nll, nll_ngram_bits_per_token=math.log2(lm.perplexity(scored)),
                  ngram_bits_per_token=math.log2(report["perplexity_real"]))
    return report


def keyword_choices(train_ids: torch.Tensor, tokenizer: TextTokenizer, num: int,
                    generator: torch.Generator) -> torch.Tensor:
    """``num`` keywords for the control test: words of rank 50 to 1000 in the training split (common
    enough to be learnable, past the function words; a small vocabulary: past its top fifth), drawn
    uniformly."""
    counts = torch.bincount(train_ids.reshape(-1), minlength=tokenizer.vocab_size)
    counts[[tokenizer.pad_id, tokenizer.unk_id]] = 0
    ranked = counts.argsort(descending=True)[: int((counts > 0).sum())]
    pool = ranked[min(50, len(ranked) // 5):1000]
    return pool[torch.randint(len(pool), (num,), generator=generator)]


def style_metrics(config: TextConfig, data: Prepared, model: Precond, *, lm_order: int, num: int, seed: int,
                  guidance: float | None, **options) -> dict:
    """Style control: samples drawn with each label, judged by a naive-Bayes classifier over one n-gram
    model per style (fit on the training split); its accuracy on held-out real sentences is the floor."""
    from ...metrics.text import KneserNeyLM

    train, test = data.splits["train"], data.splits["test"]
    models = [KneserNeyLM(order=lm_order).fit([t.split() for t, y in zip(train["text"], train["label"].tolist())
                                               if y == k]) for k in range(data.num_classes)]
    counts = torch.bincount(train["label"], minlength=data.num_classes).double()
    log_prior = (counts / counts.sum()).log().tolist()

    def classify(texts):
        return torch.tensor([max(range(data.num_classes), key=lambda k: models[k].sentence_logprob(t.split())
                                 + log_prior[k]) for t in texts])

    # the floor on a balanced held-out set (as many of each style)
    members = [torch.nonzero(test["label"] == k).reshape(-1) for k in range(data.num_classes)]
    per_class = min(len(m) for m in members)
    pick = torch.cat([m[held_out_pick(len(m), per_class, seed)] for m in members])  # at random: splits are sorted
    real_accuracy = float((classify([test["text"][i] for i in pick]) == test["label"][pick]).float().mean())
    scale = config.guidance if guidance is None else guidance
    report = {"style_accuracy_real": real_accuracy, "style_guidance": scale}
    drawn = draw(model, config, data.tokenizer, data.class_prior, num=num, seed=seed + 3,
                 labels=torch.arange(num) % data.num_classes, guidance=scale, **options)
    report["style_accuracy"] = float((classify(drawn["text"]) == drawn["labels"]).float().mean())
    return report


def nll_bits_per_token(model: Precond, config: TextConfig, data: Prepared, *, num: int, seed: int,
                       ode_steps: int = NLL_ODE_STEPS) -> dict:
    """An upper bound on ``-log2 p(sentence)`` per token (words plus one end, as the n-gram model counts)
    for ``num`` held-out sentences drawn at random (:func:`held_out_pick`; their indices in
    ``nll_pick``): with ``x = E[w] + s n`` (``s = round_sigma``),
    ``-log p(w) <= -log p_s(x) + log q(x | w) - log p(w | x)``, where ``log p_s`` is the probability-flow
    ODE likelihood of the noisy embeddings (one Hutchinson probe, ``ode_steps`` RK4 steps), ``q`` the
    Gaussian around the embeddings and ``p(w | x)`` the rounding posterior. Style-conditional runs are
    scored unconditionally."""
    pick = held_out_pick(len(data.splits["test"]["ids"]), num, seed)
    ids = data.splits["test"]["ids"][pick]
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        table = token_table(model, config.sigma_data).detach()
    s = config.round_sigma * config.sigma_data
    x0 = embed(ids.to(device), table)  # (N, L, D)
    noise = torch.randn(x0.shape, generator=generator).to(x0)
    x = x0 + s * noise
    cond = None
    if is_conditional(config, data.num_classes):
        cond = torch.full((len(ids),), data.num_classes, device=device)
    log_p = ode_log_likelihood(model, x, sigma_min=s, sigma_max=model.schedule.sigma_max, steps=ode_steps,
                               cond=cond, generator=generator)
    dim = x0[0].numel()
    log_q = -0.5 * (noise**2).reshape(len(ids), -1).sum(1) - dim * math.log(s * math.sqrt(2 * math.pi))
    logits = (2 * x @ table.T - (table**2).sum(1)) / (2 * s**2)  # (N, L, V)
    log_round = -F.cross_entropy(logits.transpose(1, 2), ids.to(device), reduction="none").sum(1)
    nats = -log_p + log_q - log_round
    tokens = (ids != data.tokenizer.pad_id).sum(1) + 1
    return {"nll_bits_per_token": float((nats / math.log(2)).sum() / tokens.sum()),
            "nll_rounding_bits_per_token": float((-log_round / math.log(2)).sum() / tokens.sum()),
            "nll_num": len(ids), "nll_ode_steps": ode_steps, "nll_pick": pick.tolist()}
