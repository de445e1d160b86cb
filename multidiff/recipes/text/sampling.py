"""Drawing sentences from a text run: the controls (length, keyword, style, infilling), sampling,
infilling and the run folder's reading."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from ...adapters.text import (TextTokenizer, embed, length_control, parse_template,
                             round_to_tokens, token_table)
from ...atomic import atomic_write
from ...core.guidance import Clamp, GradientGuidance, RestrictRows, SelfConditioning
from ...core.inpainting import sample_inpaint
from ...core.precond import Precond
from ...core.samplers import default_sigmas
from ...core.schedules import EDM
from ...train import from_pretrained, load_config
from ...train.generate import draw as draw_samples
from ...train.progress import sampling_progress
from ..common import config_from_saved, guided, sampling_device, threads_of
from .model import CONFIGS, INFILL_REGIONS, KeywordClassifier, Prepared, TextConfig, is_conditional, load_classifier, load_corpus, trained_sigma_min



def _progress_text(step: int, ema: Precond, run_dir: Path | None, *, config: TextConfig, tokenizer: TextTokenizer,
                   classes) -> None:
    """Sentences drawn during training, in ``progress/step-N.txt``."""
    if run_dir is None:
        return
    drawn = draw(ema, config, tokenizer, classes, num=20, seed=0)
    path = run_dir / "progress" / f"step-{step:07d}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(drawn["text"]) + "\n"))


# ---------------------------------------------------------------- sampling


def draw(model: Precond, config: TextConfig, tokenizer: TextTokenizer, classes, *, num: int, seed: int = 0,
         label: int | None = None, labels: torch.Tensor | None = None, guidance: float | None = None,
         sampler: str | None = None,
         steps: int | None = None, lengths: torch.Tensor | None = None, keywords: torch.Tensor | None = None,
         keyword_scale: float | None = None, classifier: KeywordClassifier | None = None,
         known_ids: torch.Tensor | None = None, known: torch.Tensor | None = None,
         temperature: float | None = None, progress: bool = False) -> dict:
    """Sentences from ``model``: ``{"text": [...], "ids": (num, L), "x": (num, L, D) the continuous
    samples, "labels"?, "control": [...], "seconds"}``.

    Controls: ``lengths (num,)`` exact token counts; ``keywords (num,)`` token ids to include
    (needs ``classifier``); ``known_ids (num, L)`` with ``known (num, L)`` bool: tokens to keep
    (infilling). ``classes``: the number of classes or their weights (the corpus's mix); a
    style-conditional run draws labels from them unless given ``label`` (all) or ``labels``, and
    samples under classifier-free guidance of scale ``guidance`` (default: the run's).
    ``temperature`` (default: the run's) divides a categorical model's logits while sampling."""
    sampler = config.sampler if sampler is None else sampler
    temperature = config.temperature if temperature is None else temperature
    if temperature != 1.0 and config.prediction != "categorical":
        raise ValueError(f"a sampling temperature needs prediction=categorical (a posterior over the table), "
                         f"this run has {config.prediction!r}")
    steps = config.sample_steps if steps is None else steps
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    sigmas = default_sigmas(model.schedule, steps, sampler, sigma_data=config.sigma_data)
    with torch.no_grad():
        table = token_table(model, config.sigma_data).detach()
    vocab = table.shape[0]
    out: dict = {"control": [{} for _ in range(num)]}
    cond = None
    prior = torch.ones(classes) if isinstance(classes, int) else torch.as_tensor(classes, dtype=torch.float64)
    num_classes = len(prior)
    if is_conditional(config, num_classes):
        if labels is None:
            labels = (torch.full((num,), label) if label is not None else
                      torch.multinomial(prior, num, replacement=True, generator=generator))
        out["labels"] = labels
        cond = labels.to(device)
    # rows a position may hold: never [UNK]; [PAD] only where the control allows it
    allowed = torch.ones(num, config.length, vocab, dtype=torch.bool)
    allowed[..., tokenizer.unk_id] = False
    if known is None:
        known = torch.zeros(num, config.length, dtype=torch.bool)
        known_ids = torch.full((num, config.length), tokenizer.pad_id, dtype=torch.long)
    else:
        allowed[..., tokenizer.pad_id] &= known  # a blank is one real token
    if lengths is not None:
        pads, length_allowed = length_control(lengths, config.length, vocab, tokenizer.pad_id, [tokenizer.unk_id])
        allowed &= length_allowed
        known = known | pads
        for i, n in enumerate(lengths.tolist()):
            out["control"][i]["length"] = n
    allowed = allowed.to(device)
    keyword = None
    if keywords is not None:
        if classifier is None:
            raise ValueError("keyword control needs the run's keyword classifier (trained with classifier_steps > 0)")
        words = keywords.to(device)

        def log_p_keyword(x, sigma, cond=None):
            return classifier.log_p_contains(x, sigma, words)

        keyword = (log_p_keyword, config.keyword_scale if keyword_scale is None else keyword_scale)
        vocabulary = tokenizer.vocabulary()
        for i, k in enumerate(keywords.tolist()):
            out["control"][i]["keyword"] = vocabulary[k]
    denoiser = _denoiser(model, config, table, allowed, temperature, num_classes,
                         None if cond is None else (config.guidance if guidance is None else guidance), keyword)
    mask = known.to(device)[..., None].to(table.dtype)  # (num, L, 1)
    start = time.perf_counter()
    if bool(known.any()):
        options = {} if cond is None else {"cond": cond}
        with sampling_progress(len(sigmas) - 1, f"sample ({sampler})", progress) as callback, \
                torch.set_grad_enabled(keywords is not None):
            x = sample_inpaint(denoiser, embed(known_ids.to(device), table), mask, sigmas, method=sampler,
                               generator=generator, callback=callback, **options)
    else:
        x = draw_samples(denoiser, (num, config.length, table.shape[1]), sigmas, sampler=sampler,
                         generator=generator, device=device, cond=cond, progress=progress,
                         grad=keywords is not None)
    x = x.detach()
    ids = round_to_tokens(x, table, allowed)
    ids = torch.where(known.to(device), known_ids.to(device), ids).cpu()
    out.update(ids=ids, x=x.float().cpu(), text=tokenizer.decode(ids), seconds=time.perf_counter() - start)
    return out


def _denoiser(model: Precond, config: TextConfig, table: torch.Tensor, allowed: torch.Tensor, temperature: float,
              num_classes: int, guidance: float | None, keyword: tuple | None = None):
    """The denoiser text is sampled with, wrappers in this order: a categorical model picks among the
    ``allowed`` rows itself (its posterior renormalised over them, at ``temperature``), reads its last
    estimate if self-conditioned, is guided toward its style label at scale ``guidance`` (None:
    unconditional), then by ``keyword = (log_p, scale)`` if given, and its estimate is snapped to the
    ``table`` if the run clamps."""
    denoiser = RestrictRows(model, allowed, temperature) if config.prediction == "categorical" else model
    if getattr(model, "self_condition", False):
        denoiser = SelfConditioning(denoiser)
    if guidance is not None:
        denoiser = guided(denoiser, num_classes, guidance)
    if keyword is not None:
        denoiser = GradientGuidance(denoiser, *keyword)
    if config.clamp:
        denoiser = Clamp(denoiser, table, allowed, below=config.clamp_below or None)
    return denoiser


def calibration_problem(run_dir: str | os.PathLike, num: int):
    """What ``multidiff calibrate`` calibrates: the model as ``sample`` draws by default (free length,
    never ``[UNK]``, the run's temperature; style labels cycling through the classes under the
    run's guidance) on batches of ``num`` sentences."""
    from ...train.calibration import CalibrationProblem

    model, config, tokenizer, prior, _ = load_run(run_dir, device=_device(run_dir))
    device = next(model.parameters()).device
    with torch.no_grad():
        table = token_table(model, config.sigma_data).detach()
    allowed = torch.ones(config.length, table.shape[0], dtype=torch.bool, device=device)  # the same for every draw
    allowed[:, tokenizer.unk_id] = False
    cond = torch.arange(num) % len(prior) if is_conditional(config, len(prior)) else None
    denoiser = _denoiser(model, config, table, allowed, config.temperature, len(prior),
                         None if cond is None else config.guidance)
    return CalibrationProblem(model, denoiser, (num, config.length, table.shape[1]), cond, config.sigma_data)


def read_config(run_dir: str | os.PathLike) -> TextConfig:
    return config_from_saved(run_dir, load_config(run_dir)["config"], CONFIGS, "a text")


def load_run(run_dir: str | os.PathLike, device=None):
    """``(model, config, tokenizer, class_prior, class_names)`` of a text run (``class_prior``: the share of
    each class in its training data)."""
    model, saved = from_pretrained(run_dir, device=device)
    config = config_from_saved(run_dir, saved, CONFIGS, "a text")
    if isinstance(model.schedule, EDM):  # runs saved before the floor: sample only where they were trained
        model.schedule.sigma_min = max(model.schedule.sigma_min, trained_sigma_min(config))
    prior = saved.get("class_prior") or [1.0] * int(saved.get("num_classes", 1))
    return model, config, TextTokenizer.load(run_dir), prior, saved.get("class_names")


def _check_label(config: TextConfig, num_classes: int, label, guidance) -> None:
    conditional = is_conditional(config, num_classes)
    if label is not None:
        if not conditional:
            raise ValueError(f"this {config.recipe} run is not style-conditional, so it takes no label")
        if not 0 <= label < num_classes:
            raise ValueError(f"label must be in [0, {num_classes}), got {label}")
    if guidance is not None and guidance < 0:
        raise ValueError(f"guidance must be >= 0 (1: no guidance), got {guidance}")


def _keyword_ids(tokenizer: TextTokenizer, keyword: str, num: int) -> torch.Tensor:
    ids = tokenizer.token_ids(keyword.strip().lower())
    if len(ids) != 1 or ids[0] == tokenizer.unk_id:
        raise ValueError(f"keyword {keyword!r} is not one word of this run's vocabulary")
    return torch.full((num,), ids[0], dtype=torch.long)


def sample(run_dir: str | os.PathLike, *, num: int, sampler: str | None = None, steps: int | None = None,
           seed: int = 0, progress: bool = False, label: int | None = None, guidance: float | None = None,
           length: int | None = None, keyword: str | None = None, keyword_scale: float | None = None,
           temperature: float | None = None) -> dict:
    """``num`` sentences from a trained run (see :func:`draw`), optionally of exactly ``length``
    tokens, containing ``keyword``, or in style ``label``, at sampling ``temperature`` (default: the
    run's)."""
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    model, config, tokenizer, prior, class_names = load_run(run_dir, device=_device(run_dir))
    _check_label(config, len(prior), label, guidance)
    options = {}
    if length is not None:
        if not 1 <= length <= config.length:
            raise ValueError(f"length must be in [1, {config.length}] for this run, got {length}")
        options["lengths"] = torch.full((num,), length)
    if keyword is not None:
        options.update(keywords=_keyword_ids(tokenizer, keyword, num), keyword_scale=keyword_scale,
                       classifier=_classifier(run_dir, model))
    with threads_of(config):
        drawn = draw(model, config, tokenizer, prior, num=num, seed=seed, label=label, guidance=guidance,
                     sampler=sampler, steps=steps, temperature=temperature, progress=progress, **options)
    drawn["class_names"] = class_names
    return drawn


def _device(run_dir) -> str:
    return sampling_device(read_config(run_dir))


def _classifier(run_dir, model: Precond) -> KeywordClassifier:
    classifier = load_classifier(Path(run_dir), model.schedule, next(model.parameters()).device)
    if classifier is None:
        raise ValueError(f"{str(run_dir)!r} has no keyword classifier (trained with classifier_steps=0)")
    return classifier


def infill(run_dir: str | os.PathLike, template: str, *, num: int = 5, sampler: str | None = None,
           steps: int | None = None, seed: int = 0, progress: bool = False, label: int | None = None,
           guidance: float | None = None, temperature: float | None = None) -> dict:
    """``num`` completions of ``template``: each ``___`` is one generated token, the other words stay."""
    model, config, tokenizer, prior, class_names = load_run(run_dir, device=_device(run_dir))
    _check_label(config, len(prior), label, guidance)
    ids, known = parse_template(template, tokenizer, config.length)
    with threads_of(config):
        drawn = draw(model, config, tokenizer, prior, num=num, seed=seed, label=label, guidance=guidance,
                     sampler=sampler, steps=steps, known_ids=ids.expand(num, -1), known=known.expand(num, -1),
                     temperature=temperature, progress=progress)
    for control in drawn["control"]:
        control["template"] = template
    drawn["class_names"] = class_names
    return drawn


def infill_mask(ids: torch.Tensor, region: str, generator: torch.Generator, pad_id: int = 0) -> torch.Tensor:
    """``(N, L)`` bool, True = known: hide ``random`` (a third of each sentence's words, at least one),
    ``middle`` (the middle third) or ``end`` (all words after the first half) of each sentence."""
    if region not in INFILL_REGIONS:
        raise ValueError(f"unknown text infilling region {region!r}; choose one of: {', '.join(INFILL_REGIONS)}")
    lengths = (ids != pad_id).sum(1)
    position = torch.arange(ids.shape[1])[None]
    if region == "random":
        score = torch.rand(ids.shape, generator=generator).masked_fill(ids == pad_id, 2.0)
        rank = score.argsort(1).argsort(1)
        hidden = rank < (lengths[:, None] / 3).ceil()
    elif region == "middle":
        lo = lengths // 3
        hidden = (position >= lo[:, None]) & (position < (lo + (lengths / 3).ceil().long()).clamp(min=lo + 1)[:, None])
    else:
        hidden = (position >= (lengths // 2).clamp(min=1)[:, None]) & (position < lengths[:, None])
    return ~hidden


def inpaint_test(run_dir: str | os.PathLike, *, num: int, region: str | None = None, label: int | None = None,
                 guidance: float | None = None, reconstruction_scale: float = 0.0, sampler: str | None = None,
                 steps: int | None = None, seed: int = 0, progress: bool = False) -> dict:
    """Infill ``num`` held-out sentences drawn at random: hide words (``region``: ``random``, the default,
    ``middle`` or ``end``) and fill them with the run; the sentence length is kept. Adds ``reference``
    (the originals), ``known`` and ``infill_accuracy`` (share of hidden words recovered exactly)."""
    if reconstruction_scale:
        raise ValueError("text infilling has no reconstruction guidance; leave reconstruction_scale at 0")
    model, config, tokenizer, prior, class_names = load_run(run_dir, device=_device(run_dir))
    _check_label(config, len(prior), label, guidance)
    data = Prepared(config, load_corpus(config), tokenizer)
    with threads_of(config):
        drawn = _infill_test(model, config, data, num=num, region=region or "random", label=label,
                             guidance=guidance, sampler=sampler, steps=steps, seed=seed, progress=progress)
    drawn["class_names"] = class_names
    return drawn


def _infill_test(model, config, data: Prepared, *, num: int, region: str, seed: int, **options) -> dict:
    test = data.splits["test"]["ids"]
    if not 1 <= num <= len(test):
        raise ValueError(f"infilling fills held-out sentences; num must be in [1, {len(test)}], got {num}")
    generator = torch.Generator().manual_seed(seed)
    reference = test[held_out_pick(len(test), num, generator)]
    known = infill_mask(reference, region, generator, data.tokenizer.pad_id)
    drawn = draw(model, config, data.tokenizer, data.class_prior, num=num, seed=seed, known_ids=reference,
                 known=known, **options)
    hidden = ~known
    drawn.update(reference=reference, known=known, region=region,
                 infill_accuracy=float((drawn["ids"][hidden] == reference[hidden]).float().mean()))
    for control, row in zip(drawn["control"], data.tokenizer.decode(torch.where(known, reference, 0))):
        control["template"] = row
    return drawn


# ---------------------------------------------------------------- writing samples


def held_out_pick(count: int, num: int, seed: int | torch.Generator) -> torch.Tensor:
    """Indices of ``min(num, count)`` held-out sentences drawn at random (seeded), never the first ones:
    the splits are stored sorted, so their first sentences are the alphabetical start ("a ..."),
    shorter and likelier than the rest. ``seed`` may be a generator, which the caller then goes on
    drawing from (the infill test draws its masks after the pick)."""
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    return torch.randperm(count, generator=generator)[:num]


def write_samples(drawn: dict, stem: str | os.PathLike, run_dir: str | os.PathLike | None = None) -> list[Path]:
    """``stem.txt`` (one sentence a line, in sample order) and ``stem.jsonl`` (per sentence: ``text``,
    ``tokens``, ``label`` (-1: none), ``control``; infilling adds ``reference``)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    ids = drawn["ids"]
    tokenizer = TextTokenizer.load(run_dir) if run_dir is not None else None
    tokens = tokenizer.tokens(ids) if tokenizer is not None else [t.split() for t in drawn["text"]]
    labels = drawn.get("labels")
    names = drawn.get("class_names") or []
    references = tokenizer.decode(drawn["reference"]) if "reference" in drawn and tokenizer else None
    lines = []
    for i, text in enumerate(drawn["text"]):
        record = {"text": text, "tokens": tokens[i], "label": int(labels[i]) if labels is not None else -1,
                  "control": drawn["control"][i]}
        if labels is not None and 0 <= int(labels[i]) < len(names):
            record["style"] = names[int(labels[i])]
        if references is not None:
            record["reference"] = references[i]
        lines.append(json.dumps(record))
    txt = atomic_write(stem.with_name(stem.name + ".txt"),
                       lambda tmp: Path(tmp).write_text("".join(t + "\n" for t in drawn["text"])))
    jsonl = atomic_write(stem.with_name(stem.name + ".jsonl"),
                         lambda tmp: Path(tmp).write_text("".join(line + "\n" for line in lines)))
    return [txt, jsonl]
