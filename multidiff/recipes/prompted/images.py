"""``fashion_text``: a Fashion-MNIST item from a sentence ("a pair of sneakers", "an ankle boot,
side view"), a U-Net cross-attending to MiniLM's token states, classifier-free guidance on the text."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar

from ...adapters.image import decode, training_data
from ...backbones import UNet2D, UNet2DConfig
from ...backbones.text_encoder import MINILM_DIM
from ...core.precond import Precond
from ...data.images import ImageDataset
from ...data.prompts import grammar_for
from ..base import Domain
from ..common import make_schedule, noise_embedding, seeded_model, threads_of
from ...train import load_config
from ..images import ImageConfig, load_data, write_samples
from .conditioning import (PromptRecipe, check_prompt_fields, draw_prompted, evaluate_run, evaluation_prompts,
                           read_prompts_file)


@dataclass(frozen=True)
class FashionTextConfig(ImageConfig):
    """The CPU Fashion-MNIST recipe of ``docs/results/images.md`` (U-Net "tiny", batch 64, lr 2e-3) with
    prompts in place of labels: the label-conditioned run of the same size is its baseline. 2,400 steps, not
    that run's 3,000: cross-attention makes a step ~20% dearer, and the recipe must train, sample and
    evaluate within 25 minutes on 2 cores."""

    recipe: ClassVar[str] = "fashion_text"
    dataset: str = "fashion"
    preset: str = "tiny"
    steps: int = 2400
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 200
    ema_decay: float = 0.999
    guidance: float = 3.0
    label_dropout: float = 0.1  # the share of training examples given the empty prompt
    prompts_per_class: int = 100  # training prompts of each class (from the training templates)
    text_states: str = "last"  # the context: MiniLM's last layer ("last+input": and its input layer, see notes_text)
    num_eval: int = 300  # samples per prompt set in eval.json (seen phrasings, held-out phrasings)

    def __post_init__(self):
        super().__post_init__()
        if self.dataset != "fashion" or self.task != "generate" or not self.conditional:
            raise ValueError("fashion_text generates Fashion-MNIST items from prompts; keep dataset=fashion, "
                             "task=generate and conditional=true")
        check_prompt_fields(self)


CONFIGS = {FashionTextConfig.recipe: FashionTextConfig}
DESCRIPTIONS = {"fashion_text": "Fashion-MNIST items from sentences: U-Net 'tiny' cross-attending to the packaged "
                                "MiniLM encoder, classifier-free guidance on the text, CPU"}
EVAL_SETS = {"seen": "train", "held_out_phrasing": "held_out"}  # report name -> template split


def build_model(config: FashionTextConfig, shape: tuple[int, int, int]) -> Precond:
    """The untrained denoiser: U-Net ``config.preset`` with cross-attention to 384-d token states and their
    pooled mean in the noise embedding; weights depend on ``config.seed`` only."""
    schedule = make_schedule(config.schedule, config.sigma_data)
    channels, height, width = shape
    options = dict(image_size=(height, width), in_channels=channels, context_dim=MINILM_DIM, pooled_context=True,
                   embedding=noise_embedding(schedule))
    if config.width:
        options["base_channels"] = config.width
    backbone_config = UNet2DConfig.preset(config.preset, **options)
    return seeded_model(lambda: UNet2D(backbone_config), config.seed, config.prediction, schedule, config.sigma_data)


class PromptImages(PromptRecipe, Domain):
    name = "a prompt-conditioned image"
    configs = CONFIGS
    examples = "images"

    def load_data(self, config, *, progress: bool = False) -> ImageDataset:
        return load_data(config)

    def build_model(self, config, data: ImageDataset) -> Precond:
        return build_model(config, data.shape)

    def training_set(self, config, data: ImageDataset) -> dict:
        return training_data(data.train, conditional=True)

    def trained_labels(self, config, data) -> list[int]:
        return list(range(data.num_classes))

    def trainer_options(self, config, data: ImageDataset) -> dict:
        grammar = grammar_for(config.dataset)
        examples = [grammar.example(k) for k in range(data.num_classes)]
        return {"loss_fn": self.prompt_objective(config, data),
                "on_sample": partial(_progress_grid, config=config, shape=data.shape, examples=examples)}

    def run_info(self, config, data: ImageDataset) -> dict:
        return {"num_classes": data.num_classes, "class_names": list(data.class_names), "image_shape": list(data.shape)}

    def after_training(self, run_dir: Path, config, data: ImageDataset, ema: Precond, *, progress: bool) -> dict:
        with threads_of(config):
            report = _evaluate(ema, config, data, num=config.num_eval, seed=0, progress=progress)
            examples = read_prompts_file(run_dir)["examples"]
            prompts = [examples[i % len(examples)] for i in range(100)]
            drawn = {"samples": decode(draw_prompted(ema, prompts, data.shape, guidance=config.guidance,
                                                     sampler=config.sampler, steps=config.sample_steps,
                                                     sigma_data=config.sigma_data, seed=0,
                                                     text_states=config.text_states).float().cpu()),
                     "prompts": prompts}
        write_samples(drawn, run_dir / "samples", run_dir)
        return report


def _progress_grid(step: int, ema: Precond, run_dir: Path | None, *, config, shape, examples) -> None:
    if run_dir is None:
        return
    prompts = [examples[i % len(examples)] for i in range(50)]
    x = draw_prompted(ema, prompts, shape, guidance=config.guidance, sampler=config.sampler,
                      steps=config.sample_steps, sigma_data=config.sigma_data, seed=0, text_states=config.text_states)
    write_samples({"samples": decode(x.float().cpu())}, run_dir / "progress" / f"step-{step:07d}", run_dir, npz=False)


def sample(run_dir: str | os.PathLike, *, num: int, sampler: str | None = None, steps: int | None = None,
           seed: int = 0, progress: bool = False, label: int | None = None, guidance: float | None = None,
           prompts: list[str] | None = None) -> dict:
    """``num`` images from a prompt run: ``{"samples": (num, C, H, W) in [0, 1], "prompts": [num strings]}``.
    ``prompts`` cycle (a warning for one that names nothing Fashion-MNIST has; "" samples unconditionally);
    without them, each class's example prompt in turn (or only ``label``'s)."""
    config, model, chosen = DOMAIN.sampling(run_dir, num=num, prompts=prompts, label=label, guidance=guidance)
    data_shape = tuple(load_config(run_dir)["config"]["image_shape"])
    with threads_of(config):
        x = draw_prompted(model, chosen, data_shape, guidance=config.guidance if guidance is None else guidance,
                          sampler=sampler or config.sampler, steps=steps or config.sample_steps,
                          sigma_data=config.sigma_data, seed=seed, progress=progress, text_states=config.text_states)
    return {"samples": decode(x.float().cpu()), "prompts": chosen}


def _evaluate(model: Precond, config, data: ImageDataset, *, num: int, seed: int, sampler: str | None = None,
              steps: int | None = None, guidance: float | None = None, progress: bool = False) -> dict:
    """The bundled classifier's agreement with the prompt's class on each prompt set (seen phrasings,
    held-out phrasings), and the Frechet distance of the seen set's samples."""
    from ...metrics.images import evaluate_images, load_classifier

    grammar = grammar_for(config.dataset)
    guidance = config.guidance if guidance is None else guidance
    sampler, steps = sampler or config.sampler, steps or config.sample_steps
    classifier = load_classifier(config.dataset, train_if_missing=False)
    report = {"recipe": config.recipe, "dataset": config.dataset, "num_per_set": num, "sampler": sampler,
              "sample_steps": steps, "guidance": guidance, "seed": seed, "encoder": "all-MiniLM-L6-v2",
              "text_states": config.text_states}
    for name, split in EVAL_SETS.items():
        prompts, labels = evaluation_prompts(grammar, range(data.num_classes), num, split=split, seed=seed)
        x = draw_prompted(model, prompts, data.shape, guidance=guidance, sampler=sampler, steps=steps,
                          sigma_data=config.sigma_data, seed=seed, progress=progress, text_states=config.text_states)
        metrics = evaluate_images(decode(x.float().cpu()), labels, data.test["x"], classifier,
                                  real_train=data.train["x"] if name == "seen" else None, seed=seed)
        report[f"{name}_classifier_accuracy"] = metrics["classifier_accuracy"]
        if name == "seen":
            report.update(frechet=metrics["frechet"], frechet_floor=metrics["frechet_floor"],
                          classifier_test_accuracy=metrics["classifier_test_accuracy"])
            report["frechet_over_floor"] = metrics["frechet"] / metrics["frechet_floor"]
    return report


def evaluate(run_dir: str | os.PathLike, *, num: int | None = None, sampler: str | None = None,
             steps: int | None = None, seed: int = 0, progress: bool = False, guidance: float | None = None) -> dict:
    """The metrics of fresh samples per prompt set (see :func:`_evaluate`), as a JSON-able dict."""
    return evaluate_run(DOMAIN, _evaluate, run_dir, num=num, sampler=sampler, steps=steps, seed=seed,
                        progress=progress, guidance=guidance)


DOMAIN = PromptImages(sample=sample, evaluate=evaluate, write_samples=write_samples)

__all__ = ["CONFIGS", "DESCRIPTIONS", "DOMAIN", "EVAL_SETS", "FashionTextConfig", "PromptImages", "build_model",
           "evaluate", "sample"]
