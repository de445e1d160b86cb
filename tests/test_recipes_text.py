"""The text recipe end to end on a tiny model: train, sample with every control, infill, eval, CLI."""

import itertools
import json
import shutil
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

pytestmark = pytest.mark.requires("transformers")

from multidiff.cli import main  # noqa: E402
from multidiff.core.samplers import SAMPLERS  # noqa: E402
from multidiff.recipes import get_recipe, make_config  # noqa: E402
from multidiff.recipes import text as text_recipe  # noqa: E402

SUBJECTS = ["the cat", "a dog", "the bird", "my friend", "the old man", "a child"]
VERBS = ["sat on", "ran to", "looked at", "walked past"]
PLACES = ["the mat", "the river", "a house", "the park", "the garden"]


def grammar_file(path):
    lines = [f"{s} {v} {p}" for s, v, p in itertools.product(SUBJECTS, VERBS, PLACES)]
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_options(data) -> dict:
    """A tiny model on the grammar file ``data``, trained for a few hundred steps on one thread."""
    return {"dataset": "file", "data_root": str(data), "length": 8, "preset": "tiny", "width": "0", "depth": "0",
            "embed_dim": 16, "max_unknown": "0",
            "steps": "400", "batch_size": "32", "lr": "2e-3", "warmup_steps": "20", "sample_steps": "8",
            "threads": "1", "checkpoint_every": "0", "sample_every": "0", "device": "cpu"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text")
    data = grammar_file(folder / "lines.txt")
    recipe = get_recipe("wordnet")
    config = make_config(recipe, {**tiny_options(data), "num_eval": "24", "classifier_steps": "300"})
    return recipe.train(config, folder / "run")


def test_train_writes_the_run_folder(run_dir):
    for name in ("config.json", "ema.safetensors", "tokenizer/tokenizer.json", "keyword_classifier.safetensors",
                 "keyword_classifier.json", "eval.json", "metrics.jsonl"):
        assert (run_dir / name).is_file(), name
    report = json.loads((run_dir / "eval.json").read_text())
    for key in ("perplexity", "perplexity_real", "distinct_1", "distinct_2", "copy_rate", "rounding_error",
                "length_accuracy", "keyword_success", "infill_accuracy", "nll_bits_per_token",
                "ngram_bits_per_token", "nll_ngram_bits_per_token", "nll_ode_steps"):
        assert key in report, key
    assert report["length_accuracy"] == 1.0  # exact by construction: pads are known, earlier positions not pads
    assert report["nll_bits_per_token"] > 0
    if shutil.which("link-parser"):  # the fluency check of record, samples beside as many real sentences
        assert 0 <= report["grammar_rate"] <= 1 and 0 <= report["grammar_rate_real"] <= 1
    else:
        assert "link-grammar" in report["grammar_note"]


def test_samples_learn_the_grammar(run_dir):
    """A few hundred steps on a 120-sentence grammar: most samples are sentences of the grammar."""
    drawn = text_recipe.sample(run_dir, num=40, seed=1)
    grammar = {f"{s} {v} {p}" for s, v, p in itertools.product(SUBJECTS, VERBS, PLACES)}
    assert sum(t in grammar for t in drawn["text"]) >= 20, drawn["text"][:10]


@pytest.mark.parametrize("method", sorted(SAMPLERS))
def test_infill_keeps_the_fixed_tokens_with_every_sampler(run_dir, method):
    drawn = text_recipe.infill(run_dir, "the ___ sat ___ the mat", num=4, sampler=method, steps=4)
    for text in drawn["text"]:
        words = text.split()
        assert len(words) == 6 and words[0] == "the" and words[2] == "sat" and words[4:] == ["the", "mat"], text


def test_length_control_is_exact(run_dir):
    for length in (3, 5, 8):
        drawn = text_recipe.sample(run_dir, num=6, length=length, seed=length)
        assert all(len(t.split()) == length for t in drawn["text"]), drawn["text"]


def test_length_control_lets_the_model_choose_the_forced_words(run_dir):
    """The grammar's sentences have 6 or 7 words and end with a place. Asked for 7 words, a model
    that commits to a 6-word sentence must put a word where it wanted [PAD]: its posterior restricted
    to the other rows picks a likely one (a place, here), not the row nearest [PAD] (which rounding
    alone took: a sentence-final word in 4 of 40 samples, against 40 of 40)."""
    ends = {place.split()[-1] for place in PLACES}
    drawn = text_recipe.sample(run_dir, num=40, length=7, seed=7)
    assert sum(t.split()[-1] in ends for t in drawn["text"]) >= 30, drawn["text"][:10]


def test_keyword_guidance_raises_success(run_dir):
    """The grammar puts "river" in a fifth of the sentences; guidance by the classifier makes it common."""
    plain = text_recipe.sample(run_dir, num=40, seed=3)
    steered = text_recipe.sample(run_dir, num=40, seed=3, keyword="river", keyword_scale=10.0)
    share = lambda texts: sum("river" in t.split() for t in texts) / len(texts)  # noqa: E731
    assert share(steered["text"]) >= 0.6 > share(plain["text"])
    assert steered["control"][0]["keyword"] == "river"


def test_temperature_keeps_grammar_and_sharpens(run_dir):
    """A sampling temperature below 1 follows the model's likelier words: the samples change and stay in
    the grammar at least as often as at 1; temperature 1 is the plain posterior. (The grammar is
    uniform, so a well-trained posterior has little to sharpen: distinct sentences are not a property
    here, 37 of 40 at both temperatures. tests/test_adapter_text.py checks the sharpening exactly.)"""
    grammar = {f"{s} {v} {p}" for s, v, p in itertools.product(SUBJECTS, VERBS, PLACES)}
    plain = text_recipe.sample(run_dir, num=40, seed=1)["text"]
    cold = text_recipe.sample(run_dir, num=40, seed=1, temperature=0.3)["text"]
    assert cold != plain
    assert sum(t in grammar for t in cold) >= sum(t in grammar for t in plain) - 2, cold[:10]
    assert text_recipe.sample(run_dir, num=40, seed=1, temperature=1.0)["text"] == plain
    with pytest.raises(ValueError, match="temperature must be > 0"):
        text_recipe.sample(run_dir, num=2, temperature=0.0)
    with pytest.raises(ValueError, match="temperature needs prediction=categorical"):
        text_recipe.TextConfig(prediction="edm", temperature=0.5)


def test_bad_controls(run_dir):
    with pytest.raises(ValueError, match="not one word of this run's vocabulary"):
        text_recipe.sample(run_dir, num=2, keyword="zebra")
    with pytest.raises(ValueError, match="length must be in"):
        text_recipe.sample(run_dir, num=2, length=9)
    with pytest.raises(ValueError, match="not style-conditional"):
        text_recipe.sample(run_dir, num=2, label=1)
    with pytest.raises(ValueError, match="no ___"):
        text_recipe.infill(run_dir, "the cat sat")


def test_inpaint_held_out_sentences(run_dir):
    drawn = text_recipe.inpaint_test(run_dir, num=5, region="middle")
    assert torch.equal(drawn["ids"][drawn["known"]], drawn["reference"][drawn["known"]])
    assert 0.0 <= drawn["infill_accuracy"] <= 1.0


def test_cli_sample_infill_and_eval(run_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["sample", str(run_dir), "--num", "5", "--length", "4", "--out",
                                  str(tmp_path / "four")])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "four.txt").read_text().splitlines()
    records = [json.loads(line) for line in (tmp_path / "four.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and [r["text"] for r in records] == lines
    assert all(len(r["tokens"]) == 4 and r["control"] == {"length": 4} and r["label"] == -1 for r in records)

    result = runner.invoke(main, ["infill", str(run_dir), "--template", "a ___ ran to the ___", "-n", "3"])
    assert result.exit_code == 0, result.output
    assert all(line.startswith("a ") and " ran to the " in line for line in result.output.splitlines())
    result = runner.invoke(main, ["infill", str(run_dir), "--template", "a ___ ran to the ___", "-n", "3",
                                  "--temperature", "0.5"])
    assert result.exit_code == 0, result.output
    assert all(line.startswith("a ") and " ran to the " in line for line in result.output.splitlines())

    result = runner.invoke(main, ["sample", str(run_dir), "--num", "3", "--temperature", "0.5", "--out",
                                  str(tmp_path / "cold")])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "cold.txt").read_text().splitlines()) == 3
    result = runner.invoke(main, ["sample", str(run_dir), "--num", "3", "--temperature", "0", "--out",
                                  str(tmp_path / "frozen")])
    assert result.exit_code == 2 and "temperature" in result.output

    result = runner.invoke(main, ["sample", str(run_dir), "--num", "2", "--keyword", "zebra", "--out",
                                  str(tmp_path / "z")])
    assert result.exit_code == 1 and "zebra" in result.output

    result = runner.invoke(main, ["eval", str(run_dir), "--num", "8", "--steps", "4"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["num"] == 8


def test_max_unknown_keeps_training_sentences_with_rare_words_only():
    """max_unknown=1: a training sentence with one word outside the vocabulary stays (as [UNK]), one
    with two goes; held-out sentences keep none, so their floors are sentences a sample could be."""
    from multidiff.data.text import TextCorpus

    common = ["the cat sat on the mat"] * 3 + ["a dog ran to the park"] * 3
    odd = ["the zebra sat on the mat", "the zebra sat on the yak"]
    split = lambda texts: {"text": texts, "label": torch.zeros(len(texts), dtype=torch.long)}  # noqa: E731
    corpus = TextCorpus(split(common + odd), split(odd), split(odd + common[:1]), ("file",))
    for max_unknown, kept in ((0, 6), (1, 7), (2, 8)):
        config = text_recipe.TextConfig(dataset="file", data_root="x", max_unknown=max_unknown)
        tokenizer = text_recipe.TextTokenizer.build_word(common, 100)  # zebra and yak: unknown
        data = text_recipe.Prepared(config, corpus, tokenizer)
        assert len(data.splits["train"]["ids"]) == kept
        assert (data.splits["train"]["ids"] == tokenizer.unk_id).sum() == kept - 6 + (kept == 8)
        assert len(data.splits["validation"]["ids"]) == 0 and data.splits["test"]["text"] == common[:1]
        assert data.dropped == {"train": 8 - kept, "validation": 2, "test": 2}


def test_sampling_stays_where_the_network_was_trained(run_dir, tmp_path):
    """EDM text runs sample no lower than training's sigmas reach (a 2.1M run lost every sample on
    grids that went to EDM's 0.002); a run saved with the old floor is raised to it on loading."""
    import shutil

    from multidiff.core.samplers import default_sigmas

    config = text_recipe.read_config(run_dir)
    floor = text_recipe.trained_sigma_min(config)
    assert floor == pytest.approx(2.71828 ** (config.p_mean - 3 * config.p_std), rel=1e-4) and floor > 0.002
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    saved = json.loads((old / "config.json").read_text())
    saved["model"]["schedule"]["sigma_min"] = 0.002
    (old / "config.json").write_text(json.dumps(saved))
    model = text_recipe.load_run(old)[0]
    assert model.schedule.sigma_min == pytest.approx(floor)
    for method in sorted(SAMPLERS):
        sigmas = default_sigmas(model.schedule, 100, method, sigma_data=config.sigma_data)
        assert float(sigmas[sigmas > 0].min()) >= floor * (1 - 1e-9), method


def test_dropout_reaches_the_backbone_and_is_off_when_sampling(tmp_path):
    """``dropout`` is the backbone's MLP dropout: on in training mode (two calls differ), off in eval
    mode (two calls agree); a value outside [0, 1) is refused. (adaLN-Zero starts every block's gates
    at zero, which hides the MLP at initialisation, so the weights are drawn at random first.)"""
    data = grammar_file(tmp_path / "lines.txt")
    recipe = get_recipe("wordnet")
    config = make_config(recipe, {**tiny_options(data), "dropout": "0.5"})
    corpus = text_recipe.load_corpus(config)
    tokenizer = text_recipe.build_tokenizer(config, corpus)
    model = text_recipe.build_model(config, tokenizer, 1)
    assert model.backbone.config.dropout == 0.5
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
    x, sigma = torch.randn(2, 8, 16, generator=torch.Generator().manual_seed(0)), torch.full((2,), 2.0)
    with torch.no_grad():
        assert not torch.equal(model.train()(x, sigma), model(x, sigma))
        assert torch.equal(model.eval()(x, sigma), model(x, sigma))
    with pytest.raises(ValueError, match="dropout"):
        make_config(recipe, {"dropout": "1.0"})


def test_weight_decay_reaches_the_optimizer(tmp_path, monkeypatch):
    """``weight_decay`` is AdamW's: the recipe hands it to the training engine with the rest of the
    engine settings unchanged; a negative value is refused."""
    data = grammar_file(tmp_path / "lines.txt")
    recipe = get_recipe("wordnet")
    seen = []

    class Stop(Exception):
        pass

    def spy(model, engine, **kwargs):
        seen.append(engine)
        raise Stop

    from multidiff.recipes import base

    monkeypatch.setattr(base, "Trainer", spy)  # the shared skeleton builds every recipe's engine
    for decay in ("0.25", "0"):
        with pytest.raises(Stop):
            recipe.train(make_config(recipe, {**tiny_options(data), "weight_decay": decay}), tmp_path / f"run{decay}")
    assert [e.weight_decay for e in seen] == [0.25, 0.0]
    assert seen[0] == replace(seen[1], weight_decay=0.25)
    with pytest.raises(ValueError, match="weight_decay"):
        make_config(recipe, {"weight_decay": "-0.1"})


def test_bad_data_file(tmp_path):
    recipe = get_recipe("wordnet")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    config = make_config(recipe, {"dataset": "file", "data_root": str(empty), "preset": "tiny"})
    with pytest.raises(ValueError, match="empty"):
        recipe.train(config, tmp_path / "run")


def test_self_conditioned_model_trains_reloads_and_samples(tmp_path):
    """self_condition=true: the saved model reloads as self-conditioned, learns the grammar, and its
    sampler feeds it its previous estimate (first call of every run without one)."""
    data = grammar_file(tmp_path / "lines.txt")
    recipe = get_recipe("wordnet")
    config = make_config(recipe, {**tiny_options(data), "num_eval": "16", "classifier_steps": "0",
                                  "self_condition": "true"})
    run = recipe.train(config, tmp_path / "run")
    model = text_recipe.load_run(run)[0]
    assert model.self_condition and model.backbone.config.extra_channels == 16
    calls = []
    forward = model.forward

    def spy(x, sigma, cond=None, previous=None, allowed=None):
        calls.append(previous is not None)
        return forward(x, sigma, cond, previous, allowed)

    model.forward = spy
    drawn = text_recipe.draw(model, text_recipe.read_config(run), text_recipe.TextTokenizer.load(run), 1, num=40,
                              seed=1)
    assert calls == [False] + [True] * (len(calls) - 1) and len(calls) == 8
    grammar = {f"{s} {v} {p}" for s, v, p in itertools.product(SUBJECTS, VERBS, PLACES)}
    assert sum(t in grammar for t in drawn["text"]) >= 12, drawn["text"][:10]  # (random words: ~0)
    with pytest.raises(ValueError, match="self_condition needs prediction=categorical"):
        make_config(recipe, {"self_condition": "true", "prediction": "edm"})


def test_calibrate_a_text_run(run_dir, tmp_path):
    """``multidiff calibrate`` on a text run: the grid is fitted to the denoiser as ``sample`` calls it
    (never [UNK]), saved in grids.json, used by sampling at that step count, and the samples stay in
    the grammar."""
    import shutil

    from multidiff.core.samplers import default_sigmas
    from multidiff.train.checkpoint import load_grids

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    result = CliRunner().invoke(main, ["calibrate", str(copy), "--steps", "4", "--num", "32", "--evals", "8"])
    assert result.exit_code == 0, result.output
    grid = load_grids(copy)[("unipc", 4)]
    info = json.loads((copy / "grids.json").read_text())["info"]["unipc"]["4"]
    assert info["rms_calibrated"] <= info["rms_default"] * (1 + 1e-9)
    model = text_recipe.load_run(copy)[0]
    assert torch.equal(default_sigmas(model.schedule, 4, "unipc", sigma_data=1.0), grid)
    assert float(grid[-2]) >= model.schedule.sigma_min - 1e-12  # never below where the network was trained
    grammar = {f"{s} {v} {p}" for s, v, p in itertools.product(SUBJECTS, VERBS, PLACES)}
    drawn = text_recipe.sample(copy, num=40, seed=1, steps=4)
    assert "[UNK]" not in " ".join(drawn["text"])
    assert sum(t in grammar for t in drawn["text"]) >= 15, drawn["text"][:10]


def test_the_gpu_recipe_builds_on_its_data_and_takes_a_training_step():
    """``wordnet_gpu`` is only trained on a GPU; here its config, data (WordNet and fortunes, two
    styles), tokenizer and 1-D DiT are built as ``train`` builds them, and one loss step reaches the
    backbone and the token table."""
    from functools import partial

    from multidiff.adapters.text import text_loss
    from multidiff.recipes.common import loss_weighting

    config = make_config(get_recipe("wordnet_gpu"), {"device": "cpu"})
    corpus = text_recipe.load_corpus(config)
    tokenizer = text_recipe.build_tokenizer(config, corpus)
    data = text_recipe.Prepared(config, corpus, tokenizer)
    ids, labels = data.splits["train"]["ids"], data.splits["train"]["label"]
    assert data.num_classes == 2 and set(labels.tolist()) == {0, 1}
    assert ids.shape[1] == config.length == 24 and tokenizer.vocab_size == config.vocab_size
    assert len(ids) > 20 * config.batch_size
    torch.manual_seed(0)
    model = text_recipe.build_model(config, tokenizer, data.num_classes)
    assert sum(p.numel() for p in model.parameters()) > 40e6  # the "base" 1-D DiT and its 12k-word head
    loss_fn = partial(text_loss, weighting=loss_weighting(config.weighting, config.sigma_data),
                      sigma_data=config.sigma_data, round_sigma=config.round_sigma * config.sigma_data,
                      null_class=data.num_classes, dropout=config.label_dropout)
    batch = {"x": ids[:4], "cond": labels[:4]}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(3):  # adaLN-Zero: step 1 reaches the zero output layer only, step 2 the gates
        optimizer.zero_grad()
        loss = loss_fn(model, batch, torch.Generator().manual_seed(step))
        assert loss.shape == (4,) and torch.isfinite(loss).all()
        loss.mean().backward()
        optimizer.step()
    assert float(model.backbone.final.weight.grad.abs().sum()) > 0
    assert float(model.backbone.blocks[0].attn.to_q.weight.grad.abs().sum()) > 0
    assert float(model.backbone.token_embedding.weight.grad.abs().sum()) > 0


def test_held_out_sentences_are_drawn_at_random_not_from_the_sorted_start():
    """The splits are stored sorted, so the likelihood and the real-text floors score a seeded random
    draw of held-out sentences: distinct, reproducible, and not the alphabetical first ones."""
    pick = text_recipe.held_out_pick(500, 100, seed=0)
    assert len(set(pick.tolist())) == 100 and torch.equal(pick, text_recipe.held_out_pick(500, 100, seed=0))
    assert not torch.equal(pick, text_recipe.held_out_pick(500, 100, seed=1))
    assert float(pick.float().mean()) > 150  # the first 100 would average 49.5
    assert sorted(text_recipe.held_out_pick(7, 100, seed=0).tolist()) == list(range(7))
    generator = torch.Generator().manual_seed(0)  # a generator draws the same pick, then goes on
    assert torch.equal(text_recipe.held_out_pick(500, 100, generator), pick)
    assert not torch.equal(text_recipe.held_out_pick(500, 100, generator), pick)
