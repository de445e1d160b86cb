"""Text conditioning any recipe can use: prompts -> frozen MiniLM token states as the cross-attention
context, the empty prompt as the null condition, and the prompts a run trained on saved with it.

==========================  ===================================================================
:class:`PromptBank`         every training prompt encoded once: ``context (P, L, 384)``, ``mask``,
                            and ``by_label (C, K)`` (the prompt ids of each label); id 0 is "".
:func:`prompt_loss`         the denoising loss with each example's prompt drawn from its label's
                            K prompts, or the empty prompt with probability ``dropout``
                            (classifier-free guidance training)
:func:`prompt_cond`         the ``cond`` and the null ``uncond`` for a list of prompts
:func:`prompted_denoiser`   the model under classifier-free guidance toward the prompts
:func:`check_prompts`       a :class:`PromptWarning` for each prompt that names nothing the data has
``prompts.json``            in the run folder: the grammar, the held-out templates and pairs, the
                            prompt that stands for each class, the training prompts
==========================  ===================================================================
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ...atomic import atomic_write_json
from ...backbones.text_encoder import TEXT_STATES, TextEncoder
from ...core.guidance import ClassifierFreeGuidance
from ...core.losses import denoising_loss
from ...data.prompts import PromptGrammar, grammar_for

PROMPTS_FILE = "prompts.json"
NULL_PROMPT = ""

_ENCODERS: dict[str, TextEncoder] = {}


def check_prompt_fields(config) -> None:
    """The prompt fields every prompt-conditioned recipe config has, checked at config time."""
    if config.prompts_per_class < 1:
        raise ValueError(f"prompts_per_class must be >= 1, got {config.prompts_per_class}")
    if config.text_states not in TEXT_STATES:
        raise ValueError(f"text_states must be one of {', '.join(TEXT_STATES)}, got {config.text_states!r}")


class PromptWarning(UserWarning):
    """A prompt the run can sample from but that names nothing its data has."""


def text_encoder(states: str = "last") -> TextEncoder:
    """The process's MiniLM encoder giving ``states`` (:data:`~multidiff.backbones.text_encoder.TEXT_STATES`);
    its cache is shared by training, sampling and evaluation."""
    if states not in _ENCODERS:
        _ENCODERS[states] = TextEncoder(states)  # which checks ``states``
    return _ENCODERS[states]


@dataclass
class PromptBank:
    """The training prompts of a run, encoded: row 0 is the empty prompt."""

    prompts: list[str]
    by_label: torch.Tensor  # (C, K) long: prompt ids of each label (labels without data: all 0)
    context: torch.Tensor  # (P, L, 384)
    mask: torch.Tensor  # (P, L) bool

    @classmethod
    def build(cls, table: dict[int, list[str]], num_classes: int, *, states: str = "last") -> PromptBank:
        """``table``: label -> its K training prompts (every label the same K); ``states``: which token
        states make the context (:func:`text_encoder`)."""
        counts = {len(prompts) for prompts in table.values()}
        if len(counts) != 1:
            raise ValueError(f"every label needs as many prompts, got counts {sorted(counts)}")
        prompts = [NULL_PROMPT] + sorted({p for rows in table.values() for p in rows} - {NULL_PROMPT})
        index = {p: i for i, p in enumerate(prompts)}
        by_label = torch.zeros(num_classes, counts.pop(), dtype=torch.long)
        for label, rows in table.items():
            by_label[label] = torch.tensor([index[p] for p in rows])
        context, mask = text_encoder(states)(prompts)
        return cls(prompts, by_label, context, mask)

    def cond(self, ids: torch.Tensor, device) -> dict:
        """``{"context", "context_mask"}`` of prompt ``ids (B,)``, cut to their longest prompt."""
        ids = ids.cpu()
        mask = self.mask[ids]
        length = int(mask.sum(1).max())
        return {"context": self.context[ids, :length].to(device), "context_mask": mask[:, :length].to(device)}


def prompt_loss(model, batch: dict, generator: torch.Generator, *, bank: PromptBank, weighting,
                dropout: float) -> torch.Tensor:
    """The denoising loss per example, conditioned on one of its label's prompts (drawn uniformly)
    or, with probability ``dropout``, on the empty prompt. Everything random comes from ``generator``."""
    x0, labels = batch["x"], batch["cond"]
    choice = torch.randint(bank.by_label.shape[1], labels.shape, generator=generator, device=labels.device)
    ids = bank.by_label.to(labels.device)[labels, choice]  # (B,)
    if dropout > 0:
        drop = torch.rand(labels.shape, generator=generator, device=labels.device) < dropout
        ids = torch.where(drop, torch.zeros_like(ids), ids)
    sigma = model.schedule.sample_sigmas(x0.shape[0], generator=generator, device=x0.device)
    return denoising_loss(model, x0, sigma, weighting=weighting, cond=bank.cond(ids, x0.device), generator=generator)


def prompt_cond(prompts: Sequence[str], device, *, states: str = "last") -> tuple[dict, dict]:
    """``cond`` for ``prompts`` and the empty prompt's ``uncond`` (batch 1, padded to the same length)."""
    context, mask = text_encoder(states)([*prompts, NULL_PROMPT])
    cond = {"context": context[:-1].to(device), "context_mask": mask[:-1].to(device)}
    uncond = {"context": context[-1:].to(device), "context_mask": mask[-1:].to(device)}
    return cond, uncond


def draw_prompted(model, prompts: Sequence[str], shape: tuple[int, ...], *, guidance: float, sampler: str,
                  steps: int, sigma_data: float, seed: int, progress: bool = False,
                  text_states: str = "last") -> torch.Tensor:
    """One sample of ``shape`` (less the batch) per prompt, from noise drawn from ``seed``, under
    classifier-free guidance toward each prompt; the model-space tensor ``(len(prompts), *shape)``.
    ``text_states`` must be what the model was trained on (:func:`text_encoder`)."""
    from ...core.samplers import default_sigmas
    from ...train.generate import draw

    device = next(model.parameters()).device
    cond, uncond = prompt_cond(prompts, device, states=text_states)
    sigmas = default_sigmas(model.schedule, steps, sampler, sigma_data=sigma_data)
    return draw(prompted_denoiser(model, guidance, uncond), (len(prompts), *shape), sigmas, sampler=sampler,
                generator=torch.Generator().manual_seed(seed), device=device, cond=cond, progress=progress)


def prompts_to_draw(saved: dict, grammar: PromptGrammar, recipe: str, *, num: int, prompts: Sequence[str] | None,
                    label: int | None) -> list[str]:
    """The ``num`` prompts a ``sample`` call draws: ``prompts`` cycled (each checked, see
    :func:`check_prompts`), else the prompt standing for ``label``, else those of every class in turn."""
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    examples = saved["examples"]
    if prompts is not None:
        if label is not None:
            raise ValueError("give prompts or a label, not both (a label stands for its class's example prompt)")
        if isinstance(prompts, str):
            prompts = [prompts]
        if not prompts:
            raise ValueError("prompts is empty; give at least one prompt (\"\" samples unconditionally)")
        check_prompts(prompts, grammar, recipe)
        chosen = list(prompts)
    elif label is not None:
        if not 0 <= label < len(examples):
            raise ValueError(f"label must be in [0, {len(examples)}) for {recipe}, got {label}")
        chosen = [examples[label]]
    else:
        chosen = list(examples)
    return [chosen[i % len(chosen)] for i in range(num)]


def prompted_denoiser(model, guidance: float, uncond: dict):
    """``model`` under classifier-free guidance of scale ``guidance`` (1: the plain conditional model)."""
    return model if guidance == 1.0 else ClassifierFreeGuidance(model, guidance, uncond)


def check_prompts(prompts: Sequence[str], grammar: PromptGrammar, recipe: str) -> list[str]:
    """Warn (:class:`PromptWarning`) about each non-empty prompt that names nothing the data has; returns
    the warnings. Empty prompts are unconditional samples, on purpose."""
    messages = []
    for prompt in dict.fromkeys(prompts):
        if prompt.strip() and not grammar.names(prompt):
            messages.append(f"prompt {prompt!r} names nothing the {recipe} data has (it knows e.g. "
                            f"{grammar.known()}); the samples follow the words MiniLM finds closest")
            warnings.warn(messages[-1], PromptWarning, stacklevel=3)
    return messages


def evaluation_prompts(grammar: PromptGrammar, labels: Sequence[int], num: int, *, split: str,
                       seed: int) -> tuple[list[str], torch.Tensor]:
    """``num`` prompts cycling through ``labels``, phrased with the ``split`` templates ("train": seen
    phrasings, freshly filled; "held_out": phrasings never trained on), and their labels ``(num,)``."""
    labels = [int(k) for k in labels]
    per_label = -(-num // len(labels))
    table = {k: grammar.prompts(k, per_label, split=split, seed=10_000 + seed) for k in labels}
    chosen = [labels[i % len(labels)] for i in range(num)]
    return [table[k][i // len(labels)] for i, k in enumerate(chosen)], torch.tensor(chosen)


def evaluate_run(domain, measure, run_dir: str | os.PathLike, *, num: int | None, sampler: str | None,
                 steps: int | None, seed: int, progress: bool, guidance: float | None) -> dict:
    """A prompt run's ``evaluate``: its config, data and EMA model, then ``measure(model, config, data,
    num=..., ...)`` with ``num`` samples per prompt set (default: the run's ``num_eval``)."""
    from ..common import sampling_device, threads_of

    config = domain.read_config(run_dir)
    num = config.num_eval if num is None else num
    if num < 2:
        raise ValueError(f"num must be >= 2 (samples per prompt set), got {num}")
    data = domain.load_data(config)
    model, _ = domain.load_run(run_dir, device=sampling_device(config))
    with threads_of(config):
        return measure(model, config, data, num=num, seed=seed, sampler=sampler, steps=steps, guidance=guidance,
                       progress=progress)


# ---------------------------------------------------------------- the run's prompts.json


def write_prompts_file(run_dir: Path, *, dataset: str, examples: list[str], table: dict[int, list[str]],
                       held_out_labels: list[int]) -> Path:
    grammar = grammar_for(dataset)
    return atomic_write_json(Path(run_dir) / PROMPTS_FILE, {
        "format": 1, "grammar": dataset, "encoder": TextEncoder.name, "examples": examples,
        "train_templates": list(grammar.templates), "held_out_templates": list(grammar.held_out),
        "held_out_labels": held_out_labels, "train_prompts": {str(k): v for k, v in table.items()}})


def read_prompts_file(run_dir: str | os.PathLike) -> dict:
    path = Path(run_dir) / PROMPTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} has no {PROMPTS_FILE}; it is not a prompt-conditioned run, or "
                                f"its training did not finish")
    saved = json.loads(path.read_text())
    if saved.get("format") != 1:
        raise ValueError(f"{path} has format {saved.get('format')!r}; this multidiff reads format 1")
    return saved


class PromptRecipe:
    """What a prompt-conditioned domain adds to its :class:`~multidiff.recipes.base.Domain`: the
    training prompts (``prompts_per_class`` of each label from the training templates), the bank and
    loss built from them, and ``prompts.json``. The domain names its ``grammar`` by dataset and gives
    the labels it trains on (:meth:`trained_labels`)."""

    sample_options = ("prompts",)  # what ``sample`` takes beyond the common options

    def trained_labels(self, config, data) -> list[int]:
        raise NotImplementedError

    def held_out_labels(self, config, data) -> list[int]:
        return []

    def prompt_table(self, config, data) -> dict[int, list[str]]:
        grammar = grammar_for(config.dataset)
        partial = getattr(config, "partial_prompts", 0)  # a recipe field only where the grammar has them (notes)
        return {k: grammar.prompts(k, config.prompts_per_class, split="train", seed=config.seed)
                + grammar.partial_prompts(k, partial, seed=config.seed) for k in self.trained_labels(config, data)}

    def prompt_objective(self, config, data):
        from functools import partial

        from ..common import loss_weighting

        bank = PromptBank.build(self.prompt_table(config, data), data.num_classes, states=config.text_states)
        return partial(prompt_loss, bank=bank, weighting=loss_weighting(config.weighting, config.sigma_data),
                       dropout=config.label_dropout)

    def sampling(self, run_dir, *, num: int, prompts: Sequence[str] | None, label: int | None,
                 guidance: float | None) -> tuple:
        """What a ``sample`` call needs from a run: its config, its EMA model on the sampling device and
        the ``num`` prompts to draw (:func:`prompts_to_draw`); checks ``guidance`` first."""
        from ..common import sampling_device

        config = self.read_config(run_dir)
        chosen = prompts_to_draw(read_prompts_file(run_dir), grammar_for(config.dataset), config.recipe, num=num,
                                 prompts=prompts, label=label)
        if guidance is not None and guidance < 0:
            raise ValueError(f"guidance must be >= 0 (1: no guidance), got {guidance}")
        model, _ = self.load_run(run_dir, device=sampling_device(config))
        return config, model, chosen

    def prepare_run(self, run_dir: Path, config, data) -> None:
        """The run's ``prompts.json``, written before training (so a run folder always has it)."""
        self.write_prompts(run_dir, config, data)

    def write_prompts(self, run_dir: Path, config, data) -> Path:
        grammar = grammar_for(config.dataset)
        return write_prompts_file(run_dir, dataset=config.dataset,
                                  examples=[grammar.example(k) for k in range(data.num_classes)],
                                  table=self.prompt_table(config, data),
                                  held_out_labels=self.held_out_labels(config, data))


__all__ = ["NULL_PROMPT", "PROMPTS_FILE", "PromptBank", "PromptRecipe", "PromptWarning", "check_prompt_fields",
           "check_prompts",
           "draw_prompted",
           "evaluate_run", "evaluation_prompts", "prompt_cond", "prompts_to_draw",
           "prompt_loss", "prompted_denoiser", "read_prompts_file", "text_encoder",
           "write_prompts_file"]
