"""Text recipes: Diffusion-LM-style diffusion over word embeddings learned with the denoiser.

==============  ============================================================
``wordnet``     the CPU default: WordNet's example sentences, a word-level
                vocabulary, 32-d embeddings, a small 1-D DiT predicting the
                posterior over the table; ``--dataset wordnet_fortunes`` adds
                fortunes as a second style class (label 0 = WordNet, 1 =
                fortune) for style control
``wordnet_gpu`` one GPU: WordNet and fortunes with the style label, longer
                sentences, a bigger vocabulary and backbone
==============  ============================================================

A run folder holds, beside the usual weights and config, ``tokenizer/`` (a
transformers tokenizer) and ``keyword_classifier.safetensors`` with its JSON
config: a classifier of which token sits at each position of a noisy sentence,
trained after the denoiser on its final table, for keyword control by gradient
guidance.

Controls (all through the core's wrappers, so every sampler takes them):
length (positions from N on are known pads, earlier ones may not round to a
pad: exactly N tokens), keyword (gradient guidance by the classifier, scale
``keyword_scale`` = 1 / Diffusion-LM's fluency weight), style (the class label
under classifier-free guidance), infilling (a template's words are known
embeddings; each ``___`` is one token). The clamping trick (``clamp``) snaps
every x0 estimate to the table.

Evaluation (``eval.json``, ``multidiff eval``) sets each figure beside its
real-text floor: perplexity of samples under an interpolated Kneser-Ney
trigram model fit on the training split (floor: held-out real sentences),
distinct-1/2, exact copies of training sentences, the rounding error, length
and keyword control success, style accuracy (a naive-Bayes classifier over
per-style n-gram models), infill accuracy on held-out sentences, and the
model's negative log-likelihood of held-out sentences in bits per token (an
ODE bound on embeddings plus the rounding term) beside the n-gram model's.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar

import torch
from torch.nn import functional as F

from ..adapters.text import (TOKENIZERS, TextTokenizer, embed, length_control, minilm_embeddings,
                             parse_template, round_to_tokens, rounding_error, text_loss, token_table)
from ..atomic import atomic_write, atomic_write_bytes, atomic_write_json
from ..backbones import Transformer1D, Transformer1DConfig, backbone_from_config, backbone_to_config
from ..core.guidance import Clamp, GradientGuidance, RestrictRows, SelfConditioning
from ..core.inpainting import sample_inpaint
from ..core.likelihood import ode_log_likelihood
from ..core.losses import WEIGHTINGS
from ..core.precond import PRECONDITIONERS, Precond
from ..core.samplers import SAMPLERS, default_sigmas, sample as run_sampler
from ..core.schedules import EDM, SCHEDULES
from ..data import ShuffledBatches
from ..data.text import TEXT_DATASETS, TextCorpus, load_text_dataset
from ..train import Trainer, from_pretrained, load_config, remove_checkpoints, save_pretrained
from ..train.distributed import barrier
from ..train.progress import progress_bar, sampling_progress
from .common import (check_fields, config_from_saved, device_of, engine_config, final_loss, guided, loss_weighting,
                     noise_embedding, sampling_device, seeded_model, threads_of)

DEVICES = ("auto", "cpu", "cuda")
CLASSIFIER = "keyword_classifier"
INFILL_REGIONS = ("random", "middle", "end")
# the likelihood ODE's steps: on the default run 16 steps gave 8.38 bits/token, 48 gave 8.499 and 128 8.500
NLL_ODE_STEPS = 48


@dataclass(frozen=True)
class TextConfig:
    recipe: ClassVar[str] = "wordnet"
    # data
    dataset: str = "wordnet"  # one of multidiff.data.text.TEXT_DATASETS ("wordnet_fortunes": with a style label)
    data_root: str = ""  # dataset=file: your text file, one sentence a line
    length: int = 8  # tokens per sequence (sentences up to this many words)
    conditional: bool = True  # style labels as conditioning when the dataset has several sources
    label_dropout: float = 0.1
    guidance: float = 1.0  # classifier-free guidance scale for labelled samples
    # tokens and embeddings
    tokenizer: str = "word"  # "word" (a vocabulary built from the corpus) or "minilm"
    vocab_size: int = 5000  # word tokenizer: the most frequent words kept
    max_unknown: int = 1  # training sentences may hold this many other words, as [UNK] (never sampled)
    embed_dim: int = 32  # D (minilm: 384, its table's width)
    learn_embeddings: bool = True  # Diffusion-LM's end-to-end training; false: a fixed random (or MiniLM) table
    round_sigma: float = 0.3  # noise scale of the rounding term, in units of sigma_data
    # model
    preset: str = "small"
    width: int = 128  # hidden_size; 0: the preset's (the CPU default: a narrow, shallow "small", ~2M parameters)
    depth: int = 4  # blocks; 0: the preset's
    dropout: float = 0.0  # on the backbone's MLP hidden layers
    schedule: str = "edm"
    prediction: str = "categorical"  # the posterior over the table (CDCD); "edm" etc.: Diffusion-LM's MSE + rounding
    weighting: str = "edm"  # MSE predictions only
    sigma_data: float = 1.0
    # EDM training sigmas: log-normal(p_mean, p_std), placed where the word cross-entropy changes (CDCD's
    # time warping; `python benchmarks/text_recipes.py noise --run RUN` measures it, docs/text.md)
    p_mean: float = 0.8
    p_std: float = 0.65
    # training
    steps: int = 8000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    warmup_steps: int = 200
    decay: str = "cosine"
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "auto"
    bf16: bool = True
    compile: bool = False
    threads: int = 0
    classifier_steps: int = 500  # keyword classifier training steps (0: none)
    # sampling and evaluation
    sampler: str = "unipc"
    sample_steps: int = 25
    self_condition: bool = False  # categorical only: the model also reads its previous x0 estimate
    clamp: bool = False  # the clamping trick (snap each x0 estimate to the table)
    clamp_below: float = 0.0  # clamp only at sigma <= this (0: at every step)
    keyword_scale: float = 3.0  # keyword guidance scale (1 / fluency weight)
    temperature: float = 1.0  # categorical only: the posterior's logits are divided by it while sampling
    num_eval: int = 500
    checkpoint_every: int = 1000
    sample_every: int = 1000
    resume: bool = False

    def __post_init__(self):
        check_fields(self, {"dataset": TEXT_DATASETS, "schedule": SCHEDULES, "prediction": PRECONDITIONERS,
                            "weighting": WEIGHTINGS, "sampler": SAMPLERS, "device": DEVICES, "tokenizer": TOKENIZERS},
                     at_least_one=("steps", "batch_size", "sample_steps", "num_eval", "length", "embed_dim"),
                     non_negative=("width", "depth", "warmup_steps", "seed", "threads", "checkpoint_every",
                                   "sample_every", "classifier_steps", "max_unknown", "weight_decay"),
                     positive=("lr", "sigma_data", "round_sigma", "p_std", "temperature"))
        if self.preset not in ("tiny", "small", "base"):
            raise ValueError(f"unknown transformer1d preset {self.preset!r}; choose one of: tiny, small, base")
        if self.vocab_size < 3:
            raise ValueError(f"vocab_size must be >= 3, got {self.vocab_size}")
        if not 0 <= self.label_dropout < 1 or not 0 <= self.dropout < 1 or not 0 <= self.ema_decay < 1 \
                or self.guidance < 0:
            raise ValueError(f"need label_dropout, dropout and ema_decay in [0, 1) and guidance >= 0, got "
                             f"{self.label_dropout}, {self.dropout}, {self.ema_decay}, {self.guidance}")
        if self.keyword_scale < 0:
            raise ValueError(f"keyword_scale must be >= 0, got {self.keyword_scale}")
        if self.self_condition and self.prediction != "categorical":
            raise ValueError(f"self_condition needs prediction=categorical, got {self.prediction!r}")
        if self.temperature != 1.0 and self.prediction != "categorical":
            raise ValueError(f"temperature needs prediction=categorical, got {self.prediction!r}")
        if self.dataset == "file" and not self.data_root:
            raise ValueError("the file dataset needs data_root=FILE (a UTF-8 text file, one sentence a line)")
        if self.tokenizer == "minilm" and self.embed_dim != 384:
            object.__setattr__(self, "embed_dim", 384)  # the width of MiniLM's table


@dataclass(frozen=True)
class WordNetConfig(TextConfig):
    recipe: ClassVar[str] = "wordnet"


@dataclass(frozen=True)
class WordNetGPUConfig(TextConfig):
    recipe: ClassVar[str] = "wordnet_gpu"
    dataset: str = "wordnet_fortunes"
    length: int = 24
    vocab_size: int = 12000
    embed_dim: int = 64
    preset: str = "base"
    width: int = 0  # the preset's
    depth: int = 0
    steps: int = 100_000
    batch_size: int = 256
    lr: float = 3e-4
    warmup_steps: int = 2000
    ema_decay: float = 0.9999
    # not measured at this width (64-d rows move the cross-entropy's change up): the broad distribution
    p_mean: float = 0.5
    p_std: float = 1.2
    classifier_steps: int = 4000
    checkpoint_every: int = 10_000
    sample_every: int = 10_000


CONFIGS: dict[str, type[TextConfig]] = {cls.recipe: cls for cls in (WordNetConfig, WordNetGPUConfig)}


def default_out(config: TextConfig) -> Path:
    return Path("runs") / f"{config.recipe}-seed{config.seed}"


# ---------------------------------------------------------------- data and model


class Prepared:
    """A corpus in token ids: ``splits[name] = {"ids": (N, L), "label": (N,), "text": [...]}``. Training
    sentences with more than ``config.max_unknown`` words outside the vocabulary, and validation and
    test sentences with any, are dropped (their count in ``dropped``): the held-out floors are
    sentences a sample could be."""

    def __init__(self, config: TextConfig, corpus: TextCorpus, tokenizer: TextTokenizer):
        self.corpus, self.tokenizer, self.splits, self.dropped = corpus, tokenizer, {}, {}
        for name in ("train", "validation", "test"):
            split = getattr(corpus, name)
            keep, ids = [], []
            for i, sentence in enumerate(split["text"]):
                row = tokenizer.token_ids(sentence)
                unknown = row.count(tokenizer.unk_id)
                if len(row) <= config.length and unknown <= (config.max_unknown if name == "train" else 0):
                    keep.append(i)
                    ids.append(row + [tokenizer.pad_id] * (config.length - len(row)))
            self.dropped[name] = len(split["text"]) - len(keep)
            self.splits[name] = {"ids": torch.tensor(ids, dtype=torch.long).reshape(-1, config.length),
                                 "label": split["label"][keep], "text": [split["text"][i] for i in keep]}
        if len(self.splits["train"]["ids"]) < 2:
            raise ValueError(f"no training sentence of {config.dataset!r} fits length={config.length} within the "
                             f"vocabulary; raise length or vocab_size")

    @property
    def num_classes(self) -> int:
        return self.corpus.num_classes

    @property
    def class_prior(self) -> list[float]:
        """The share of each class among the training sentences."""
        counts = torch.bincount(self.splits["train"]["label"], minlength=self.corpus.num_classes).double()
        return (counts / counts.sum()).tolist()


def load_corpus(config: TextConfig) -> TextCorpus:
    return load_text_dataset(config.dataset, root=config.data_root, seed=config.seed, max_words=config.length)


def build_tokenizer(config: TextConfig, corpus: TextCorpus) -> TextTokenizer:
    if config.tokenizer == "minilm":
        return TextTokenizer.build_minilm(corpus.train["text"])
    return TextTokenizer.build_word(corpus.train["text"], config.vocab_size)


def is_conditional(config: TextConfig, num_classes: int) -> bool:
    return config.conditional and num_classes > 1


def trained_sigma_min(config: TextConfig) -> float:
    """The lowest sigma EDM runs sample at: where training's log-normal sigmas thin out (3 standard
    deviations below ``p_mean``: 0.32 at the defaults, where the cross-entropy of the word posterior is
    already about 0.002 nats a position). Below it the network was never trained, and nothing is left to decide. A
    2.1M-parameter run sent there by the 100-step grids (EDM's own floor is 0.002) lost every
    sample: the posterior went flat and pulled every position onto the table's mean."""
    return max(0.002, math.exp(config.p_mean - 3 * config.p_std))


def make_text_schedule(config: TextConfig):
    if config.schedule == "edm":
        return EDM(sigma_data=config.sigma_data, p_mean=config.p_mean, p_std=config.p_std,
                   sigma_min=trained_sigma_min(config))
    return SCHEDULES[config.schedule](sigma_data=config.sigma_data)


def build_model(config: TextConfig, tokenizer: TextTokenizer, num_classes: int) -> Precond:
    """The untrained denoiser with its token table; weights depend on ``config.seed`` (and MiniLM's table)."""
    schedule = make_text_schedule(config)
    options = dict(in_channels=config.embed_dim, length=config.length, vocab_size=tokenizer.vocab_size,
                   num_classes=num_classes if is_conditional(config, num_classes) else 0,
                   embedding=noise_embedding(schedule), dropout=config.dropout)
    if config.prediction == "categorical":  # logits over the table at each position
        options["out_channels"] = tokenizer.vocab_size
    if config.width:
        options["hidden_size"] = config.width
    if config.depth:
        options["depth"] = config.depth
    if config.self_condition:
        options["extra_channels"] = config.embed_dim
    backbone_config = Transformer1DConfig.preset(config.preset, **options)
    model = seeded_model(lambda: Transformer1D(backbone_config), config.seed, config.prediction, schedule,
                         config.sigma_data, **({"self_condition": True} if config.self_condition else {}))
    if config.tokenizer == "minilm":
        with torch.no_grad():
            model.backbone.token_embedding.weight.copy_(minilm_embeddings(tokenizer.pieces))
    return model


# ---------------------------------------------------------------- the keyword classifier


class KeywordClassifier(torch.nn.Module):
    """Which words a noisy sentence ``x_sigma (B, L, D)`` holds where: a small 1-D DiT giving each
    position a distribution over the vocabulary, trained with cross-entropy on the true tokens at the
    schedule's training sigmas. A keyword's log-probability of appearing somewhere is
    ``log(1 - prod_l (1 - p_l(k)))`` (:meth:`log_p_contains`), treating positions as independent given
    ``x_sigma``; per-position cross-entropy teaches it far faster than a bag-of-words target."""

    def __init__(self, backbone: Transformer1D, schedule):
        super().__init__()
        self.backbone, self.schedule = backbone, schedule

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:  # (B, L, V) logits
        sigma = sigma.to(x.dtype).reshape(-1)
        x_in = x / (sigma**2 + self.schedule.sigma_data**2).sqrt()[:, None, None]
        return self.backbone(x_in, self.schedule.c_noise(sigma))

    def log_p_contains(self, x: torch.Tensor, sigma: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """``(B,)``: log P(word ``words[b]`` at some position of sentence b | x_sigma)."""
        log_p = torch.log_softmax(self(x, sigma).float(), dim=-1)  # (B, L, V)
        log_p_word = log_p.gather(2, words[:, None, None].expand(-1, log_p.shape[1], 1)).squeeze(2)  # (B, L)
        log_absent = torch.log1p(-log_p_word.exp().clamp(max=1 - 1e-6)).sum(1)  # log prod_l (1 - p_l)
        return torch.log1p(-log_absent.exp().clamp(max=1 - 1e-6))


def build_classifier(config: TextConfig, vocab_size: int, schedule) -> KeywordClassifier:
    backbone_config = Transformer1DConfig.preset("tiny", in_channels=config.embed_dim, length=config.length,
                                                 out_channels=vocab_size, hidden_size=128, num_heads=4,
                                                 embedding=noise_embedding(schedule))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 1)
        backbone = Transformer1D(backbone_config)
        # a classifier need not start as the identity: a random read-out learns several times faster
        torch.nn.init.xavier_uniform_(backbone.final.weight)
        return KeywordClassifier(backbone, schedule)


def train_classifier(config: TextConfig, table: torch.Tensor, ids: torch.Tensor, schedule, *,
                     progress: bool = False) -> KeywordClassifier:
    classifier = build_classifier(config, table.shape[0], schedule).to(table.device)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(config.seed + 2)
    batch = min(64, len(ids))
    with progress_bar(config.classifier_steps, "keyword classifier", progress) as bar:
        for _ in range(config.classifier_steps):
            rows = ids[torch.randint(len(ids), (batch,), generator=generator)].to(table.device)
            sigma = schedule.sample_sigmas(batch, generator=generator).to(table)
            x0 = embed(rows, table)
            noise = torch.randn(x0.shape, generator=generator).to(x0)
            x = x0 + sigma[:, None, None] * noise
            loss = F.cross_entropy(classifier(x, sigma).transpose(1, 2), rows)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            bar.update(1)
    return classifier.eval().requires_grad_(False)


def save_classifier(classifier: KeywordClassifier, run_dir: Path) -> None:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in classifier.backbone.state_dict().items()}
    atomic_write_bytes(run_dir / f"{CLASSIFIER}.safetensors", save(state))
    atomic_write_json(run_dir / f"{CLASSIFIER}.json", backbone_to_config(classifier.backbone))


def load_classifier(run_dir: Path, schedule, device) -> KeywordClassifier | None:
    from safetensors.torch import load_file

    path = Path(run_dir) / f"{CLASSIFIER}.safetensors"
    if not path.is_file():
        return None
    backbone = backbone_from_config(json.loads((Path(run_dir) / f"{CLASSIFIER}.json").read_text()))
    backbone.load_state_dict(load_file(path))
    return KeywordClassifier(backbone, schedule).to(device).eval().requires_grad_(False)


# ---------------------------------------------------------------- train


def train(config: TextConfig = WordNetConfig(), out: str | os.PathLike | None = None, *,
          progress: bool = False) -> Path:
    """Train, save, sample and evaluate; the run folder gets config.json, model/ema.safetensors, tokenizer/,
    keyword_classifier.*, metrics.jsonl, checkpoints/, progress/step-N.txt, samples.txt/.jsonl and eval.json."""
    run_dir = Path(out) if out is not None else default_out(config)
    corpus = load_corpus(config)
    tokenizer = build_tokenizer(config, corpus)
    data = Prepared(config, corpus, tokenizer)
    ids = data.splits["train"]["ids"]
    if config.batch_size > len(ids):
        raise ValueError(f"batch_size ({config.batch_size}) exceeds the {len(ids)} training sentences")
    conditional = is_conditional(config, data.num_classes)
    model = build_model(config, tokenizer, data.num_classes)
    train_set = {"x": ids, "cond": data.splits["train"]["label"]} if conditional else {"x": ids}
    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(run_dir)
    loss_fn = partial(text_loss, weighting=loss_weighting(config.weighting, config.sigma_data),
                      sigma_data=config.sigma_data, round_sigma=config.round_sigma * config.sigma_data,
                      learn_embeddings=config.learn_embeddings, null_class=data.num_classes,
                      dropout=config.label_dropout if conditional else 0.0)
    on_sample = partial(_progress_text, config=config, tokenizer=tokenizer, classes=data.class_prior)
    with threads_of(config):
        trainer = Trainer(model, engine_config(config), run_dir=run_dir, loss_fn=loss_fn, on_sample=on_sample,
                          progress=progress, device=device_of(config))
        if not config.resume and trainer.dist.is_main:
            remove_checkpoints(run_dir)
        result = trainer.fit(ShuffledBatches(train_set, config.batch_size, seed=config.seed), resume=config.resume)
        if not trainer.dist.is_main:
            barrier(trainer.dist)
            return run_dir
        save_pretrained(result.model, {"recipe": config.recipe, "num_classes": data.num_classes,
                                       "class_names": list(corpus.class_names), "class_prior": data.class_prior,
                                       "dropped": data.dropped,
                                       **asdict(config)}, run_dir, ema=result.ema)
        ema = result.ema
        start = time.perf_counter()
        if config.classifier_steps:
            with torch.no_grad():
                table = token_table(ema, config.sigma_data).detach()
            classifier = train_classifier(config, table, ids, ema.schedule, progress=progress)
            save_classifier(classifier, run_dir)
        classifier_seconds = time.perf_counter() - start
        report = _evaluate(run_dir, config, data, ema, progress=progress)
    report.update(train_seconds=round(result.seconds, 2), classifier_seconds=round(classifier_seconds, 2),
                  steps=result.step, final_loss=final_loss(run_dir))
    atomic_write_json(run_dir / "eval.json", report)
    barrier(trainer.dist)
    return run_dir


def _progress_text(step: int, ema: Precond, run_dir: Path | None, *, config: TextConfig, tokenizer: TextTokenizer,
                   classes) -> None:
    """Sentences drawn during training, in ``progress/step-N.txt``."""
    if run_dir is None:
        return
    drawn = _draw(ema, config, tokenizer, classes, num=20, seed=0)
    path = run_dir / "progress" / f"step-{step:07d}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(drawn["text"]) + "\n"))


# ---------------------------------------------------------------- sampling


def _draw(model: Precond, config: TextConfig, tokenizer: TextTokenizer, classes, *, num: int, seed: int = 0,
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
    options = {} if cond is None else {"cond": cond}
    with sampling_progress(len(sigmas) - 1, f"sample ({sampler})", progress) as callback:
        with torch.set_grad_enabled(keywords is not None):
            if bool(known.any()):
                x = sample_inpaint(denoiser, embed(known_ids.to(device), table), mask, sigmas, method=sampler,
                                   generator=generator, callback=callback, **options)
            else:
                x = (torch.randn((num, config.length, table.shape[1]), generator=generator) * sigmas[0]).to(device)
                x = run_sampler(denoiser, x, sigmas, method=sampler, generator=generator, callback=callback, **options)
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
    from ..train.calibration import CalibrationProblem

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
    """``num`` sentences from a trained run (see :func:`_draw`), optionally of exactly ``length``
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
        drawn = _draw(model, config, tokenizer, prior, num=num, seed=seed, label=label, guidance=guidance,
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
        drawn = _draw(model, config, tokenizer, prior, num=num, seed=seed, label=label, guidance=guidance,
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
    drawn = _draw(model, config, data.tokenizer, data.class_prior, num=num, seed=seed, known_ids=reference,
                  known=known, **options)
    hidden = ~known
    drawn.update(reference=reference, known=known, region=region,
                 infill_accuracy=float((drawn["ids"][hidden] == reference[hidden]).float().mean()))
    for control, row in zip(drawn["control"], data.tokenizer.decode(torch.where(known, reference, 0))):
        control["template"] = row
    return drawn


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
    from ..metrics.text import (KneserNeyLM, copy_rate, distinct_n, keyword_success, length_accuracy)

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

    drawn = _draw(model, config, tokenizer, data.class_prior, num=num, seed=seed, **options)
    samples = words(drawn["text"])
    report.update(perplexity=lm.perplexity(samples), perplexity_real=lm.perplexity(test_words),
                  distinct_1=distinct_n(samples, 1), distinct_2=distinct_n(samples, 2),
                  distinct_1_real=distinct_n(real, 1), distinct_2_real=distinct_n(real, 2),
                  copy_rate=copy_rate(samples, train_words), copy_rate_real=copy_rate(real, train_words),
                  rounding_error=float(rounding_error(drawn["x"], token_table(model, config.sigma_data).cpu()).mean()),
                  mean_words=sum(map(len, samples)) / num, mean_words_real=sum(map(len, real)) / len(real),
                  sample_seconds_per_sentence=drawn["seconds"] / num)
    report["perplexity_ratio"] = report["perplexity"] / report["perplexity_real"]

    # length control: lengths drawn from the held-out sentences' own
    generator = torch.Generator().manual_seed(seed)
    test_lengths = (splits["test"]["ids"] != tokenizer.pad_id).sum(1)
    num = min(num, control_num)  # the controls: fewer samples, each figure still within a few points
    report["control_num"] = num
    lengths = test_lengths[torch.randint(len(test_lengths), (num,), generator=generator)]
    drawn = _draw(model, config, tokenizer, data.class_prior, num=num, seed=seed + 1, lengths=lengths, **options)
    report.update(length_accuracy=length_accuracy(words(drawn["text"]), lengths.tolist()),
                  length_perplexity=lm.perplexity(words(drawn["text"])))

    classifier = load_classifier(Path(run_dir), model.schedule, next(model.parameters()).device)
    if classifier is not None:
        keywords = keyword_choices(splits["train"]["ids"], tokenizer, num, generator)
        drawn = _draw(model, config, tokenizer, data.class_prior, num=num, seed=seed + 2, keywords=keywords,
                      classifier=classifier, **options)
        vocabulary = tokenizer.vocabulary()
        report.update(keyword_success=keyword_success(words(drawn["text"]), [vocabulary[k] for k in keywords]),
                      keyword_perplexity=lm.perplexity(words(drawn["text"])), keyword_scale=config.keyword_scale)
        unguided = _draw(model, config, tokenizer, data.class_prior, num=num, seed=seed + 2, **options)
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
    from ..metrics.text import KneserNeyLM

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
    drawn = _draw(model, config, data.tokenizer, data.class_prior, num=num, seed=seed + 3,
                  labels=torch.arange(num) % data.num_classes, guidance=scale, **options)
    report["style_accuracy"] = float((classify(drawn["text"]) == drawn["labels"]).float().mean())
    return report


def held_out_pick(count: int, num: int, seed: int | torch.Generator) -> torch.Tensor:
    """Indices of ``min(num, count)`` held-out sentences drawn at random (seeded), never the first ones:
    the splits are stored sorted, so their first sentences are the alphabetical start ("a ..."),
    shorter and likelier than the rest. ``seed`` may be a generator, which the caller then goes on
    drawing from (the infill test draws its masks after the pick)."""
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    return torch.randperm(count, generator=generator)[:num]


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


# ---------------------------------------------------------------- writing samples


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


__all__ = ["CONFIGS", "TextConfig", "WordNetConfig", "WordNetGPUConfig", "build_model", "evaluate", "infill",
           "inpaint_test", "load_run", "read_config", "sample", "train", "write_samples"]
