"""The text recipe's settings, its corpus in token ids, its denoiser and its keyword classifier."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch.nn import functional as F

from ...adapters.text import (TOKENIZERS, TextTokenizer, embed, minilm_embeddings)
from ...backbones import Transformer1D, Transformer1DConfig, backbone_from_config, backbone_to_config
from ...core.precond import Precond
from ...core.schedules import EDM, SCHEDULES
from ...data.text import TEXT_DATASETS, TextCorpus, load_text_dataset
from ...train.side import fit, load_side_network, save_side_network
from ..base import ClassConditionalConfig
from ..common import check_fields, noise_embedding, seeded_model

CLASSIFIER = "keyword_classifier"
INFILL_REGIONS = ("random", "middle", "end")
# the likelihood ODE's steps: on the default run 16 steps gave 8.38 bits/token, 48 gave 8.499 and 128 8.500
NLL_ODE_STEPS = 48


@dataclass(frozen=True)
class TextConfig(ClassConditionalConfig):
    recipe: ClassVar[str] = "wordnet"
    # data
    dataset: str = "wordnet"  # one of multidiff.data.text.TEXT_DATASETS ("wordnet_fortunes": with a style label)
    data_root: str = ""  # dataset=file: your text file, one sentence a line
    length: int = 8  # tokens per sequence (sentences up to this many words)
    # tokens and embeddings
    tokenizer: str = "word"  # "word" (a vocabulary built from the corpus) or "minilm"
    vocab_size: int = 5000  # word tokenizer: the most frequent words kept
    max_unknown: int = 1  # training sentences may hold this many other words, as [UNK] (never sampled)
    embed_dim: int = 32  # D (minilm: 384, its table's width)
    learn_embeddings: bool = True  # Diffusion-LM's end-to-end training; false: a fixed random (or MiniLM) table
    round_sigma: float = 0.3  # noise scale of the rounding term, in units of sigma_data
    # model
    width: int = 128  # hidden_size; 0: the preset's (the CPU default: a narrow, shallow "small", ~2M parameters)
    depth: int = 4  # blocks; 0: the preset's
    dropout: float = 0.0  # on the backbone's MLP hidden layers
    prediction: str = "categorical"  # the posterior over the table (CDCD); "edm" etc.: Diffusion-LM's MSE + rounding
    weighting: str = "edm"  # MSE predictions only
    sigma_data: float = 1.0
    # EDM training sigmas: log-normal(p_mean, p_std), placed where the word cross-entropy changes (CDCD's
    # time warping; `python benchmarks/text_recipes.py noise --run RUN` measures it, docs/text.md)
    p_mean: float = 0.8
    p_std: float = 0.65
    # training
    steps: int = 8000
    lr: float = 2e-3
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    classifier_steps: int = 500  # keyword classifier training steps (0: none)
    # sampling and evaluation
    sample_steps: int = 25
    self_condition: bool = False  # categorical only: the model also reads its previous x0 estimate
    clamp: bool = False  # the clamping trick (snap each x0 estimate to the table)
    clamp_below: float = 0.0  # clamp only at sigma <= this (0: at every step)
    keyword_scale: float = 3.0  # keyword guidance scale (1 / fluency weight)
    temperature: float = 1.0  # categorical only: the posterior's logits are divided by it while sampling

    def __post_init__(self):
        super().__post_init__()
        check_fields(self, {"dataset": TEXT_DATASETS, "tokenizer": TOKENIZERS},
                     at_least_one=("length", "embed_dim"),
                     non_negative=("depth", "classifier_steps", "max_unknown", "weight_decay"),
                     positive=("round_sigma", "p_std", "temperature"))
        if self.preset not in ("tiny", "small", "base"):
            raise ValueError(f"unknown transformer1d preset {self.preset!r}; choose one of: tiny, small, base")
        if self.vocab_size < 3:
            raise ValueError(f"vocab_size must be >= 3, got {self.vocab_size}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
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
DESCRIPTIONS = {
    "wordnet": "Diffusion-LM-style text: WordNet example sentences (--dataset wordnet_fortunes: + a fortune style), "
               "word embeddings learned with a 1-D DiT, length/keyword/style control and infilling, CPU, ~13 min",
    "wordnet_gpu": "the text recipe at GPU size: WordNet + fortunes styles, 24-token sentences, 12k words, a 1-D DiT "
                   "(~61M)",
}


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
    """The keyword classifier on the final ``table``: cross-entropy of each position's true token
    from sentences noised at the schedule's training sigmas (AdamW, constant lr 3e-3, batches of 64)."""
    classifier = build_classifier(config, table.shape[0], schedule).to(table.device)
    generator = torch.Generator().manual_seed(config.seed + 2)
    batch = min(64, len(ids))

    def batch_loss(step: int) -> torch.Tensor:
        rows = ids[torch.randint(len(ids), (batch,), generator=generator)].to(table.device)
        sigma = schedule.sample_sigmas(batch, generator=generator).to(table)
        x0 = embed(rows, table)
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        x = x0 + sigma[:, None, None] * noise
        return F.cross_entropy(classifier(x, sigma).transpose(1, 2), rows)

    fit(classifier, batch_loss, steps=config.classifier_steps, lr=3e-3, desc="keyword classifier",
        progress=progress)
    return classifier.eval().requires_grad_(False)


def save_classifier(classifier: KeywordClassifier, run_dir: Path) -> None:
    save_side_network(classifier.backbone, Path(run_dir) / f"{CLASSIFIER}.safetensors",
                      Path(run_dir) / f"{CLASSIFIER}.json", backbone_to_config(classifier.backbone))


def load_classifier(run_dir: Path, schedule, device) -> KeywordClassifier | None:
    loaded = load_side_network(Path(run_dir) / f"{CLASSIFIER}.safetensors", Path(run_dir) / f"{CLASSIFIER}.json")
    if loaded is None:
        return None
    info, state = loaded
    backbone = backbone_from_config(info)
    backbone.load_state_dict(state)
    return KeywordClassifier(backbone, schedule).to(device).eval().requires_grad_(False)
