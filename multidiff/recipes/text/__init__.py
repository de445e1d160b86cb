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

import os
import time
from functools import partial
from pathlib import Path

import torch

from ...adapters.text import TextTokenizer, text_loss, token_table
from ...core.precond import Precond
from ..base import Domain
from ..common import loss_weighting, threads_of
from ..registry import register
from .model import (CLASSIFIER, CONFIGS, DESCRIPTIONS, INFILL_REGIONS, KeywordClassifier, NLL_ODE_STEPS, Prepared,
                    TextConfig, WordNetConfig, WordNetGPUConfig, build_classifier, build_model, build_tokenizer,
                    is_conditional, load_classifier, load_corpus, make_text_schedule, save_classifier,
                    train_classifier, trained_sigma_min)
from .sampling import (_progress_text, calibration_problem, draw, held_out_pick, infill, infill_mask, inpaint_test,
                       load_run, read_config, sample, write_samples)
from .evaluation import _evaluate, evaluate, keyword_choices, nll_bits_per_token, style_metrics



# ---------------------------------------------------------------- the domain


class Text(Domain):
    name = "a text"
    configs = CONFIGS
    examples = "sentences"
    sample_options = ("length", "keyword", "keyword_scale", "temperature")

    def load_data(self, config: TextConfig, *, progress: bool = False) -> Prepared:
        corpus = load_corpus(config)
        return Prepared(config, corpus, build_tokenizer(config, corpus))

    def build_model(self, config: TextConfig, data: Prepared) -> Precond:
        return build_model(config, data.tokenizer, data.num_classes)

    def training_set(self, config: TextConfig, data: Prepared) -> dict:
        ids = data.splits["train"]["ids"]
        return {"x": ids, "cond": data.splits["train"]["label"]} if is_conditional(config, data.num_classes) \
            else {"x": ids}

    def prepare_run(self, run_dir: Path, config: TextConfig, data: Prepared) -> None:
        data.tokenizer.save(run_dir)

    def trainer_options(self, config: TextConfig, data: Prepared) -> dict:
        loss_fn = partial(text_loss, weighting=loss_weighting(config.weighting, config.sigma_data),
                          sigma_data=config.sigma_data, round_sigma=config.round_sigma * config.sigma_data,
                          learn_embeddings=config.learn_embeddings, null_class=data.num_classes,
                          dropout=config.label_dropout if is_conditional(config, data.num_classes) else 0.0)
        on_sample = partial(_progress_text, config=config, tokenizer=data.tokenizer, classes=data.class_prior)
        return {"loss_fn": loss_fn, "on_sample": on_sample}

    def run_info(self, config: TextConfig, data: Prepared) -> dict:
        return {"num_classes": data.num_classes, "class_names": list(data.corpus.class_names),
                "class_prior": data.class_prior, "dropped": data.dropped}

    def after_training(self, run_dir: Path, config: TextConfig, data: Prepared, ema: Precond, *,
                       progress: bool) -> dict:
        """The keyword classifier on the final table, then the figures of eval.json (which also
        writes samples.txt / .jsonl)."""
        with threads_of(config):
            start = time.perf_counter()
            if config.classifier_steps:
                with torch.no_grad():
                    table = token_table(ema, config.sigma_data).detach()
                classifier = train_classifier(config, table, data.splits["train"]["ids"], ema.schedule,
                                              progress=progress)
                save_classifier(classifier, run_dir)
            classifier_seconds = time.perf_counter() - start
            report = _evaluate(run_dir, config, data, ema, progress=progress)
        report["classifier_seconds"] = round(classifier_seconds, 2)
        return report





def default_out(config: TextConfig) -> Path:
    return DOMAIN.default_out(config)


def train(config: TextConfig = WordNetConfig(), out: str | os.PathLike | None = None, *,
          progress: bool = False) -> Path:
    """Train, save, sample and evaluate (:meth:`Domain.train`); the run folder gets config.json,
    model/ema.safetensors, tokenizer/, keyword_classifier.*, metrics.jsonl, checkpoints/,
    progress/step-N.txt, samples.txt/.jsonl and eval.json."""
    return DOMAIN.train(config, out, progress=progress)


DOMAIN = Text(sample=sample, evaluate=evaluate, write_samples=write_samples, inpaint=inpaint_test, infill=infill,
              calibration=calibration_problem)
register(DOMAIN, DESCRIPTIONS)


__all__ = ["CLASSIFIER", "CONFIGS", "DESCRIPTIONS", "DOMAIN", "INFILL_REGIONS", "KeywordClassifier", "NLL_ODE_STEPS",
           "Prepared", "Text", "TextConfig", "TextTokenizer", "WordNetConfig", "WordNetGPUConfig", "build_classifier",
           "build_model", "build_tokenizer", "calibration_problem", "default_out", "draw", "evaluate",
           "held_out_pick", "infill", "infill_mask", "inpaint_test", "is_conditional", "keyword_choices",
           "load_classifier", "load_corpus", "load_run", "make_text_schedule", "nll_bits_per_token", "read_config",
           "sample", "save_classifier", "style_metrics", "train", "train_classifier", "trained_sigma_min",
           "write_samples"]
