"""The ``multidiff`` command line (layer 4): the only place that parses argv and prints.

A library error (a ValueError such as an unknown name or a corrupt run folder,
an OSError such as a missing file, a diverged training run) becomes one
``error: ...`` line on stderr and exit status 1; a usage error (bad option,
missing argument) one such line and status 2. Other exceptions are bugs and
keep their traceback. Heavy imports (torch) happen inside the commands, so
``--help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import click

from . import __version__

LIBRARY_ERRORS = (ValueError, OSError, FloatingPointError)


def _fail(message: str, code: int):
    click.echo("error: " + " ".join(str(message).split()), err=True)  # one line, whatever the message holds
    sys.exit(code)


class _Main(click.Group):
    """A group whose ``main`` reports every expected failure as one line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            _fail("interrupted", 130)
        except click.UsageError as err:
            hint = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
            _fail(err.format_message() + hint, err.exit_code)
        except click.ClickException as err:
            _fail(err.format_message(), err.exit_code)
        except LIBRARY_ERRORS as err:
            _fail(err, 1)
        sys.exit(code if isinstance(code, int) else 0)


def _progress(flag: bool | None) -> bool:
    """Progress bars: as asked, else only when stderr is a terminal."""
    return sys.stderr.isatty() if flag is None else flag


def _is_main_process() -> bool:
    """False on every process but rank 0 under torchrun, so a report is printed once."""
    return int(os.environ.get("RANK", "0")) == 0


progress_option = click.option("--progress/--no-progress", default=None,
                               help="Show progress bars (default: when stderr is a terminal).")


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="multidiff")
def main():
    """multidiff: one exact diffusion core (schedules, preconditioning, losses,
    samplers) with recipes on top.

    \b
    Example:
      multidiff train digits --out runs/digits
      multidiff sample runs/digits --num 100 --label 3 --guidance 2 --out threes
      multidiff eval runs/digits
      multidiff train toy2d --dataset spiral --out runs/spiral
      multidiff train spoken_digits --out runs/sd
      multidiff sample runs/sd --num 20 --label 7 --out sevens   # sevens.png, .npz, sevens/*.wav
      multidiff train wordnet --out runs/wn
      multidiff sample runs/wn --num 20 --keyword river --out river   # river.txt, river.jsonl
      multidiff infill runs/wn --template "the ___ sat on the ___"
      multidiff train notes_text --out runs/nt
      multidiff sample runs/nt --prompt "a trumpet playing G4" --num 4 --out g4   # g4.png, .npz, g4/*.wav
    """


@main.command()
def samplers():
    """List the sampling methods with a one-line description each."""
    from .core.samplers import SAMPLERS

    width = max(map(len, SAMPLERS))
    for name, info in SAMPLERS.items():
        click.echo(f"{name:<{width}}  {info.description}")


@main.command()
@click.option("--verbose", "-v", is_flag=True, help="Also list each recipe's verbs and settings.")
def recipes(verbose):
    """List the recipes that `multidiff train` accepts."""
    from dataclasses import fields

    from .recipes import RECIPES

    width = max(map(len, RECIPES))
    for name, recipe in RECIPES.items():
        click.echo(f"{name:<{width}}  {recipe.description}")
        if verbose:
            verbs = ", ".join(("train", "sample", "eval", *recipe.verbs()))
            settings = ", ".join(f"{f.name}={getattr(recipe.config_class(), f.name)}"
                                 for f in fields(recipe.config_class))
            click.echo(f"{'':<{width}}  verbs: {verbs}\n{'':<{width}}  settings: {settings}")


def _parse_settings(settings: tuple[str, ...]) -> dict[str, str]:
    parsed = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="'--set'")
        parsed[key.strip().replace("-", "_")] = value.strip()
    return parsed


def _print_report(report: dict) -> None:
    """Scalars as ``key: value``; each dict of numbers (a metric) as one row."""
    for key, value in report.items():
        if isinstance(value, dict):
            cells = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
            click.echo(f"{key}: {cells}")
        else:
            click.echo(f"{key}: {value}")


@main.command()
@click.argument("recipe_name", metavar="RECIPE")
@click.option("--steps", type=click.IntRange(min=1), help="Training steps.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Examples per step.")
@click.option("--lr", type=float, help="AdamW learning rate.")
@click.option("--seed", type=click.IntRange(min=0), help="Seed of the data split, initial weights and noise.")
@click.option("--dataset", help="Dataset of the recipe (an unknown name lists the recipe's choices; "
                                 "`multidiff recipes -v` shows each recipe's default).")
@click.option("--device", help="auto (default), cpu or cuda, for recipes with a device setting.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder to write (default: runs/RECIPE-...-seedSEED).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its newest checkpoint.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Any other setting of the recipe's config, e.g. --set width=128 (repeatable).")
@progress_option
def train(recipe_name, steps, batch_size, lr, seed, dataset, device, out, resume, settings, progress):
    """Train RECIPE (see `multidiff recipes`) and write a run folder with
    weights, config, metrics and samples to look at."""
    from .recipes import get_recipe, make_config

    recipe = get_recipe(recipe_name)
    options = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "dataset": dataset,
               "device": device, "resume": True if resume else None}
    overrides = {key: value for key, value in options.items() if value is not None}
    overrides.update(_parse_settings(settings))
    config = make_config(recipe, overrides)
    run_dir = recipe.train(config, out, progress=_progress(progress))
    if not _is_main_process():
        return
    click.echo(f"run folder: {run_dir}")
    report_path = Path(run_dir) / "eval.json"
    if report_path.is_file():
        _print_report(json.loads(report_path.read_text()))


def _run_options(command):
    for option in reversed([
        click.option("--sampler", help="Sampling method (see `multidiff samplers`; default: the run's)."),
        click.option("--steps", type=click.IntRange(min=1), help="Sampler steps (default: the run's)."),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the noise."),
        progress_option,
    ]):
        command = option(command)
    return command


def _check_sampler(sampler: str | None) -> None:
    if sampler is not None:
        from .core.samplers import get_sampler

        get_sampler(sampler)  # fail before loading anything


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--num", "-n", type=click.IntRange(min=1),
              help="Samples to draw (default: 1000; with --prompt or --prompt-file, 10 per prompt, the prompts in "
                   "turn).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output stem: writes OUT.png and OUT.npz (array 'samples'; 'labels' for a class-conditional run, "
                   "'prompts' for a prompt-conditioned one); "
                   "audio runs write waveforms (N, T) in OUT.npz with 'sample_rate', spectrograms in OUT.png and "
                   "one WAV per sample in OUT/; text runs write OUT.txt (one sentence a line) and OUT.jsonl "
                   "(tokens, label, control).")
@click.option("--label", type=click.IntRange(min=0), help="Class-conditional runs: draw only this class.")
@click.option("--guidance", type=click.FloatRange(min=0), help="Classifier-free guidance scale (default: the run's; "
                                                               "1: none).")
@click.option("--length", type=click.IntRange(min=1), help="Text runs: sentences of exactly this many tokens.")
@click.option("--keyword", help="Text runs: sentences that contain this word (gradient guidance by the run's "
                                "keyword classifier).")
@click.option("--keyword-scale", type=click.FloatRange(min=0),
              help="Text runs: the keyword guidance scale (default: the run's; 1 / Diffusion-LM's fluency weight).")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True),
              help="Text runs: divide the model's word posteriors' logits by this while sampling (below 1: likelier "
                   "words, fewer rare ones; default: the run's).")
@click.option("--prompt", "prompt_texts", multiple=True,
              help='Prompt-conditioned runs: draw from this sentence, e.g. "a trumpet playing G4" (repeatable; "" '
                   'samples unconditionally).')
@click.option("--prompt-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Prompt-conditioned runs: a UTF-8 text file with one prompt a line (blank lines skipped).")
@_run_options
def sample(run_dir, num, out, label, guidance, length, keyword, keyword_scale, temperature, prompt_texts, prompt_file,
           sampler, steps, seed, progress):
    """Draw samples from the trained run in RUN_DIR."""
    from .recipes import recipe_of_run

    _check_sampler(sampler)
    recipe = recipe_of_run(run_dir)
    prompts = _prompts(prompt_texts, prompt_file)
    if num is None:
        num = 1000 if prompts is None else 10 * len(prompts)
    extra = {key: value for key, value in (("label", label), ("guidance", guidance), ("length", length),
                                           ("keyword", keyword), ("keyword_scale", keyword_scale),
                                           ("temperature", temperature), ("prompts", prompts))
             if value is not None}
    unsupported = sorted(set(extra) - {"label", "guidance"} - set(recipe.sample_options))
    if unsupported:
        flag = {"prompts": "prompt"}.get  # the option behind a keyword, where the names differ
        options = ", ".join("--" + flag(name, name).replace("_", "-") for name in unsupported)
        takes = ", ".join("--" + flag(n, n).replace("_", "-") for n in recipe.sample_options) or "none"
        raise click.UsageError(f"{options}: recipe {recipe.name!r} does not take them (it takes: {takes})")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        samples = recipe.sample(run_dir, num=num, sampler=sampler, steps=steps, seed=seed,
                                progress=_progress(progress), **extra)
    for warning in caught:
        if issubclass(warning.category, UserWarning):  # the library's warnings about the request, one line each
            click.echo("warning: " + " ".join(str(warning.message).split()), err=True)
    _write_samples(recipe, samples, out, run_dir)


def _prompts(texts: tuple[str, ...], path: Path | None) -> list[str] | None:
    """The prompts of --prompt and --prompt-file together (None when neither is given)."""
    if not texts and path is None:
        return None
    prompts = list(texts)
    if path is not None:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        from_file = [line for line in lines if line]
        if not from_file:
            raise click.BadParameter(f"{path} holds no prompt (one prompt a line)", param_hint="'--prompt-file'")
        prompts += from_file
    return prompts


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--num", "-n", type=click.IntRange(min=1), default=20, show_default=True,
              help="Test images to fill (drawn at random from --seed).")
@click.option("--region", default=None,
              help="The hole. Images: left, right, top, bottom (halves; default bottom), center (a square of half "
                   "the side) or random-box (one box per image). Audio: continue (default; keep the first half of "
                   "the frames, generate the rest) or gap (fill the middle third). Text: random (default; a third "
                   "of the words), middle (the middle third) or end (the words after the first half).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output stem: OUT.png (rows: input with the hole black, filled, original) and OUT.npz "
                   "(samples, masked, reference, mask, labels); audio runs also write OUT/ with one WAV per clip.")
@click.option("--label", type=click.IntRange(min=0), help="Class-conditional runs: fill towards this class "
                                                          "(default: no label, the null class; a run that infers "
                                                          "one, as spoken_digits does: the class its known part "
                                                          "sounds like to it).")
@click.option("--guidance", type=click.FloatRange(min=0), help="With --label (or an inferred one): the guidance scale "
                                                               "(default: the run's).")
@click.option("--reconstruction-scale", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Reconstruction guidance on top of replacement (0: replacement only).")
@_run_options
def inpaint(run_dir, num, region, out, label, guidance, reconstruction_scale, sampler, steps, seed, progress):
    """Hide part of held-out examples (an image region, audio frames) and fill it with the
    trained run in RUN_DIR."""
    from .recipes import recipe_of_run

    _check_sampler(sampler)
    recipe = recipe_of_run(run_dir)
    _require_verb(recipe, "inpaint")
    filled = recipe.inpaint(run_dir, num=num, region=region, label=label, guidance=guidance,
                            reconstruction_scale=reconstruction_scale, sampler=sampler, steps=steps, seed=seed,
                            progress=_progress(progress))
    _write_samples(recipe, filled, out, run_dir)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--template", "-t", required=True,
              help='Text with blanks, e.g. "the ___ sat on the ___": each ___ is one generated token; the other '
                   'words stay, and the sentence ends where the template ends.')
@click.option("--num", "-n", type=click.IntRange(min=1), default=5, show_default=True, help="Completions to draw.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Output stem: OUT.txt and OUT.jsonl (default: print the completions only).")
@click.option("--label", type=click.IntRange(min=0), help="Style-conditional runs: complete in this style.")
@click.option("--guidance", type=click.FloatRange(min=0), help="With --label: the guidance scale (default: the run's).")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True),
              help="The sampling temperature of the word posteriors (default: the run's).")
@_run_options
def infill(run_dir, template, num, out, label, guidance, temperature, sampler, steps, seed, progress):
    """Fill the blanks of a sentence template with the text run in RUN_DIR."""
    from .recipes import recipe_of_run

    _check_sampler(sampler)
    recipe = recipe_of_run(run_dir)
    _require_verb(recipe, "infill")
    filled = recipe.infill(run_dir, template, num=num, label=label, guidance=guidance, sampler=sampler, steps=steps,
                           seed=seed, progress=_progress(progress),
                           **({} if temperature is None else {"temperature": temperature}))
    for text in filled["text"]:
        click.echo(text)
    if out is not None:
        _write_samples(recipe, filled, out, run_dir)


_VERB_WORDS = {"inpaint": "does not inpaint", "infill": "does not fill templates", "plan": "does not plan",
               "calibrate": "cannot be calibrated"}


def _require_verb(recipe, verb: str) -> None:
    """A usage error when ``recipe`` lacks ``verb``, naming the recipes that have it."""
    if verb not in recipe.verbs():
        from .recipes import RECIPES

        having = [name for name, other in RECIPES.items() if verb in other.verbs()]
        raise click.UsageError(f"recipe {recipe.name!r} {_VERB_WORDS[verb]} (these do: {', '.join(having)})")


def _write_samples(recipe, drawn, out: Path, run_dir: Path) -> None:
    """The recipe's picture and arrays of ``drawn`` at stem ``out`` (a .png, .npz, .txt or .jsonl suffix
    is dropped)."""
    stem = out.with_suffix("") if out.suffix in (".png", ".npz", ".txt", ".jsonl") else out
    for path in recipe.write_samples(drawn, stem, run_dir):
        click.echo(f"wrote {path}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--episodes", type=click.IntRange(min=1), default=50, show_default=True,
              help="Episodes in the real environment (random start and goal cells from --seed).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Output stem: OUT.png (planned and executed paths) and OUT.json (the figures).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="A planner setting for this evaluation, e.g. --set num_plans=8 or --set wall_margin=0.1 "
                   "(repeatable; see PlannerSettings).")
@_run_options
def plan(run_dir, episodes, out, settings, sampler, steps, seed, progress):
    """Run the trained planner in RUN_DIR in its environment and print its figures as JSON
    (success rate, mean return, normalised score, beside the baselines)."""
    from .recipes import recipe_of_run

    _check_sampler(sampler)
    recipe = recipe_of_run(run_dir)
    _require_verb(recipe, "plan")
    options = _parse_settings(settings)
    report = recipe.plan(run_dir, episodes=episodes, seed=seed, sampler=sampler, steps=steps,
                         progress=_progress(progress), **({"options": options} if options else {}))
    if out is not None:
        stem = out.with_suffix("") if out.suffix in (".png", ".json") else out
        for path in recipe.write_plan(report, stem, run_dir):
            click.echo(f"wrote {path}", err=True)
    click.echo(json.dumps(getattr(report, "figures", report), indent=2, default=float))


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--steps", "steps_list", type=click.IntRange(min=2), multiple=True,
              help="Step count to calibrate for (repeat for several; default: the run's).")
@click.option("--sampler", help="Deterministic sampler to calibrate for (default: the run's).")
@click.option("--num", "-n", type=click.IntRange(min=8), default=256, show_default=True,
              help="Draws in the calibration batch (a quarter of them only checks the result).")
@click.option("--evals", type=click.IntRange(min=1), default=60, show_default=True,
              help="Sampler runs per step of the grid (the cost: about evals x steps^2 denoiser calls on the batch).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the batch's noise.")
def calibrate(run_dir, steps_list, sampler, num, evals, seed):
    """Calibrate sigma grids on the trained run in RUN_DIR; later sampling with that sampler and step
    count uses them (saved in RUN_DIR/grids.json; delete it to go back to the default grids)."""
    from .recipes import recipe_of_run
    from .train.calibration import calibrate_run
    from .train.checkpoint import load_config

    _check_sampler(sampler)
    recipe = recipe_of_run(run_dir)
    _require_verb(recipe, "calibrate")
    saved = load_config(run_dir)["config"]
    sampler = sampler or saved.get("sampler", "unipc")
    steps_list = list(steps_list) or [saved.get("sample_steps", 10)]
    problem = recipe.calibration(run_dir, num)
    calibrate_run(run_dir, problem, steps_list, sampler, evals_per_step=evals, seed=seed,
                  log=lambda line: click.echo(line, err=True))
    click.echo(str(Path(run_dir) / "grids.json"))


@main.command("eval")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--num", "-n", type=click.IntRange(min=1), help="Samples to draw (default: the run's).")
@click.option("--guidance", type=click.FloatRange(min=0), help="Classifier-free guidance scale (default: the run's).")
@_run_options
def evaluate(run_dir, num, guidance, sampler, steps, seed, progress):
    """Sample the run in RUN_DIR and print its metrics as JSON."""
    from .recipes import recipe_of_run

    _check_sampler(sampler)
    recipe = recipe_of_run(run_dir)
    extra = {} if guidance is None else {"guidance": guidance}
    report = recipe.evaluate(run_dir, num=num, sampler=sampler, steps=steps, seed=seed, progress=_progress(progress),
                             **extra)
    click.echo(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
