"""Prompt conditioning (#30): the text encoder, the grammar of prompts, cross-attention in the
backbones, and the fashion_text / notes_text recipes end to end on tiny settings."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from multidiff.backbones import UNet1D, UNet1DConfig, UNet2D, UNet2DConfig
from multidiff.backbones.conditioning import pooled_context
from multidiff.data.prompts import FASHION, FASHION_NAMES, NOTES, held_out_combination, pitch_words

# ---------------------------------------------------------------- the grammar


def test_every_fashion_prompt_names_its_class_and_no_other():
    for label in range(10):
        for prompt in FASHION.prompts(label, 40) + FASHION.prompts(label, 20, split="held_out"):
            named = set(FASHION.names(prompt))
            assert FASHION_NAMES[label][0] in named, prompt
            # "T-shirt" also says shirt, "dress shirt" also says dress: nothing else is named
            assert named <= {FASHION_NAMES[label][0], "shirt", "dress"}, prompt


def test_held_out_templates_are_never_training_templates():
    for grammar in (FASHION, NOTES):
        assert not set(grammar.templates) & set(grammar.held_out)
        train = set(grammar.prompts(3, 200))
        held_out = set(grammar.prompts(3, 50, split="held_out"))
        assert not train & held_out


def test_notes_prompts_name_the_pitch_and_instrument_many_ways():
    prompts = NOTES.prompts(12 * 6 + 3, 64)  # MIDI 60 on the trumpet
    assert all("trumpet" in p.lower() for p in prompts)
    forms = ("midi", "octave", "middle c", "c4", "c 4")
    pitch_forms = Counter(next(f for f in forms if f in p.lower()) for p in prompts)
    assert len(pitch_forms) >= 4, pitch_forms
    assert all(NOTES.names(p) for p in prompts)


@pytest.mark.parametrize("midi,expected", [(60, {"C4", "C 4", "MIDI 60", "MIDI note 60", "middle C"}),
                                           (61, {"C#4", "Db4", "C sharp 4", "D flat 4", "MIDI 61"})])
def test_pitch_words_are_the_right_pitch(midi, expected):
    import random

    seen = {pitch_words(midi, random.Random(seed)) for seed in range(200)}
    assert expected <= seen


def test_held_out_pairs_leave_every_pitch_and_instrument_in_training():
    held_out = [k for k in range(150) if held_out_combination(k)]
    assert 20 <= len(held_out) <= 30
    per_pitch = Counter(k // 6 for k in range(150) if not held_out_combination(k))
    per_instrument = Counter(k % 6 for k in range(150) if not held_out_combination(k))
    assert min(per_pitch[p] for p in range(25)) >= 4 and min(per_instrument.values()) >= 20


def test_partial_notes_prompts_name_the_pitch_or_the_instrument_never_both():
    from multidiff.data.audio import NOTE_INSTRUMENTS

    instruments = set(NOTE_INSTRUMENTS)
    label = 12 * 6 + 3  # MIDI 60 on the trumpet
    prompts = NOTES.partial_prompts(label, 40, seed=1)
    kinds = []
    for prompt in prompts:
        named = set(NOTES.names(prompt))
        assert len(named) == 1, (prompt, named)  # one part, and named (the warning stays quiet)
        kinds.append("instrument" if named <= instruments else "pitch")
    assert Counter(kinds)["pitch"] >= 15 and Counter(kinds)["instrument"] >= 15
    assert all("trumpet" in p.lower() for p, kind in zip(prompts, kinds) if kind == "instrument")
    assert NOTES.partial_prompts(label, 8, seed=1) == prompts[:8]  # seeded
    with pytest.raises(ValueError, match="the fashion grammar has no partial templates"):
        FASHION.partial_prompts(0, 1)
    assert FASHION.partial_prompts(0, 0) == []


@pytest.mark.parametrize("midi", [48, 61, 70])
def test_every_way_of_naming_a_pitch_is_recognised(midi):
    import random

    for seed in range(60):
        words = pitch_words(midi, random.Random(seed))
        named = NOTES.names(f"a note at {words}")
        assert len(named) == 1 and named[0] in words, words


@pytest.mark.parametrize("prompt", ["a car", "the weather tomorrow", "42"])
def test_prompts_about_other_things_name_nothing(prompt):
    assert FASHION.names(prompt) == [] and NOTES.names(prompt) == []


# ---------------------------------------------------------------- backbones


def test_pooled_context_is_the_mean_of_the_real_tokens():
    context = torch.randn(2, 5, 3)
    mask = torch.tensor([[True, True, False, False, False], [True] * 5])
    pooled = pooled_context(context, mask, 2, 3, context)
    assert torch.allclose(pooled[0], context[0, :2].mean(0)) and torch.allclose(pooled[1], context[1].mean(0))
    assert torch.equal(pooled_context(None, None, 2, 3, context), torch.zeros(2, 3))


def _scrambled(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # wake the zero-initialised output layers
    return model


@pytest.mark.parametrize("kind", ["unet1d", "unet1d_projected", "unet2d"])
def test_cross_attention_reads_the_context_and_ignores_padding(kind):
    if kind.startswith("unet1d"):
        projected = dict(context_proj=4, cross_attention="all") if kind == "unet1d_projected" else {}
        model = _scrambled(UNet1D(UNet1DConfig(in_channels=4, length=8, base_channels=16, channel_mults=(1, 2),
                                               context_dim=6, pooled_context=True, **projected)))
        if projected:  # every attention reads the one projection
            assert {m.attn.to_kv.in_features for m in [model.mid_cross, *model.block_cross]} == {4}
        x = torch.randn(2, 4, 8)
    else:
        model = _scrambled(UNet2D(UNet2DConfig(in_channels=1, image_size=8, base_channels=16, channel_mults=(1, 2),
                                               attention_resolutions=(4,), num_heads=2, context_dim=6,
                                               pooled_context=True)))
        x = torch.randn(2, 1, 8, 8)
    sigma = torch.tensor([0.3, 1.0])
    context = torch.randn(2, 3, 6)
    mask = torch.ones(2, 3, dtype=torch.bool)
    out = model(x, sigma, {"context": context, "context_mask": mask})
    other = model(x, sigma, {"context": torch.randn(2, 3, 6), "context_mask": mask})
    assert out.shape == x.shape and not torch.allclose(out, other, atol=1e-4)
    padded = torch.cat([context, torch.randn(2, 4, 6)], dim=1)  # four padding tokens of noise
    padded_mask = torch.cat([mask, torch.zeros(2, 4, dtype=torch.bool)], dim=1)
    assert torch.allclose(out, model(x, sigma, {"context": padded, "context_mask": padded_mask}), atol=1e-5)


def test_pooled_context_needs_a_context():
    with pytest.raises(ValueError, match="pooled_context needs a context"):
        UNet1DConfig(pooled_context=True)
    with pytest.raises(ValueError, match="pooled_context needs a context"):
        UNet2DConfig(pooled_context=True)


def test_context_proj_needs_a_context_and_old_configs_have_none():
    with pytest.raises(ValueError, match="context_proj needs a context"):
        UNet1DConfig(context_proj=8)
    with pytest.raises(ValueError, match="context_proj"):
        UNet1DConfig(context_dim=6, context_proj=-1)
    model = UNet1D(UNet1DConfig(in_channels=4, length=8, base_channels=16, channel_mults=(1, 2), context_dim=6))
    assert model.context_proj is None and not any(k.startswith("context_proj") for k in model.state_dict())


def test_a_unet1d_without_context_refuses_one():
    model = UNet1D(UNet1DConfig(in_channels=4, length=8, base_channels=16, channel_mults=(1, 2)))
    with pytest.raises(ValueError, match="no cross-attention"):
        model(torch.randn(1, 4, 8), torch.tensor([1.0]), {"context": torch.randn(1, 2, 6)})


# ---------------------------------------------------------------- the text encoder


@pytest.mark.requires("minilm")
def test_text_encoder_pads_masks_and_caches():
    from multidiff.recipes.prompted import text_encoder

    encoder = text_encoder()
    context, mask = encoder(["a pair of sneakers", "", "an ankle boot, photographed from above"])
    assert context.shape[0] == 3 and context.shape[2] == 384 and mask.dtype == torch.bool
    assert mask[1].sum() == 2  # "" is [CLS] [SEP]: the null condition
    alone, _ = encoder(["a pair of sneakers"])
    assert torch.equal(alone[0], context[0, :alone.shape[1]])  # padding does not change a prompt's states
    assert torch.allclose(context[0, mask[0]].pow(2).mean(-1), torch.ones(int(mask[0].sum())), atol=1e-3)
    assert encoder.states(["a pair of sneakers"])[0] is encoder.states(["a pair of sneakers"])[0]  # cached
    with pytest.raises(TypeError, match="list of prompts"):
        encoder("one string")


@pytest.mark.requires("minilm")
def test_text_encoder_adds_the_input_layers_states_that_no_other_word_changes():
    from multidiff.backbones.text_encoder import TextEncoder
    from multidiff.recipes.prompted import text_encoder

    prompts = ["a trumpet playing G4", "a violin playing G4"]
    last, both = text_encoder("last").states(prompts), text_encoder("last+input").states(prompts)
    for alone, joined in zip(last, both):
        assert joined.shape == (2 * len(alone), 384) and torch.equal(joined[:len(alone)], alone)
    length = len(last[0])
    assert length == len(last[1])  # the two instruments are one word piece each: the same positions
    # "g ##4 [SEP]": the same input states whatever instrument came before, different last-layer states
    assert torch.equal(both[0][-3:], both[1][-3:])
    assert not torch.allclose(both[0][length - 3:length], both[1][length - 3:length], atol=1e-3)
    with pytest.raises(ValueError, match="unknown text states 'middle'; choose one of last, last\\+input"):
        TextEncoder("middle")


@pytest.mark.requires("minilm")
def test_prompt_loss_draws_the_labels_prompts_and_the_empty_one():
    from functools import partial

    from multidiff.core.losses import WEIGHTINGS
    from multidiff.recipes.prompted.conditioning import PromptBank, prompt_loss

    table = {0: ["a photo of a sneaker", "a sneaker"], 1: ["a bag", "a photo of a bag"]}
    bank = PromptBank.build(table, 2)
    assert bank.prompts[0] == "" and bank.by_label.shape == (2, 2)
    assert {bank.prompts[i] for i in bank.by_label[1].tolist()} == set(table[1])
    seen = []

    class Probe(torch.nn.Module):  # a backbone that records the cond it gets
        def forward(self, x, c_noise, cond=None):
            seen.append(cond)
            return x * 0

    from multidiff.core.precond import make_precond
    from multidiff.core.schedules import EDM

    model = make_precond("edm", Probe(), EDM(), sigma_data=0.5)
    loss = partial(prompt_loss, bank=bank, weighting=WEIGHTINGS["uniform"], dropout=0.5)
    batch = {"x": torch.randn(64, 3), "cond": torch.tensor([0, 1] * 32)}
    values = loss(model, batch, torch.Generator().manual_seed(0))
    assert values.shape == (64,)
    tokens = seen[0]["context_mask"].sum(1)
    assert (tokens == 2).sum() > 16 and (tokens > 2).sum() > 16  # about half get the empty prompt
    again = []
    seen, again = again, seen
    loss(model, batch, torch.Generator().manual_seed(0))
    assert torch.equal(seen[0]["context"], again[0]["context"])  # the generator decides everything


# ---------------------------------------------------------------- the recipes end to end


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory):
    from conftest import REQUIREMENTS

    for need in ("fashion", "minilm"):
        if not REQUIREMENTS[need][0]():
            pytest.skip(REQUIREMENTS[need][1])
    from multidiff.recipes import get_recipe, make_config

    recipe = get_recipe("fashion_text")
    config = make_config(recipe, {"steps": 6, "batch_size": 16, "num_eval": 4, "prompts_per_class": 3,
                                  "sample_every": 0, "checkpoint_every": 0, "sample_steps": 4, "threads": 1})
    return recipe.train(config, tmp_path_factory.mktemp("fashion_text"))


def test_fashion_text_run_keeps_its_prompts_and_reports_each_prompt_set(fashion_run):
    saved = json.loads((fashion_run / "prompts.json").read_text())
    assert saved["encoder"] == "all-MiniLM-L6-v2" and len(saved["examples"]) == 10
    assert not set(saved["train_templates"]) & set(saved["held_out_templates"])
    assert all(len(v) == 3 for v in saved["train_prompts"].values())
    report = json.loads((fashion_run / "eval.json").read_text())
    for key in ("seen_classifier_accuracy", "held_out_phrasing_classifier_accuracy", "frechet_over_floor"):
        assert 0 <= report[key] and report[key] == report[key]
    assert (fashion_run / "samples.png").is_file()


def test_sample_cli_with_prompts_writes_them_and_warns_about_unknown_ones(fashion_run, tmp_path):
    from multidiff.cli import main

    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("a pair of sneakers\n\nan ankle boot, side view\n")
    result = CliRunner().invoke(main, ["sample", str(fashion_run), "--prompt", "a car", "--prompt-file",
                                       str(prompt_file), "--num", "5", "--steps", "3", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "warning: prompt 'a car' names nothing the fashion_text data has" in result.output
    arrays = np.load(tmp_path / "s.npz")
    assert arrays["samples"].shape == (5, 1, 28, 28)
    assert list(arrays["prompts"]) == ["a car", "a pair of sneakers", "an ankle boot, side view", "a car",
                                       "a pair of sneakers"]


def test_the_empty_prompt_samples_unconditionally_whatever_the_guidance(fashion_run):
    from multidiff.recipes import get_recipe

    recipe = get_recipe("fashion_text")
    plain = recipe.sample(fashion_run, num=2, prompts=[""], guidance=1.0, steps=3)
    guided = recipe.sample(fashion_run, num=2, prompts=[""], guidance=4.0, steps=3)
    assert torch.allclose(plain["samples"], guided["samples"], atol=1e-6)
    sneakers = recipe.sample(fashion_run, num=2, prompts=["a pair of sneakers"], guidance=4.0, steps=3)
    assert not torch.allclose(sneakers["samples"], guided["samples"], atol=1e-4)


def test_prompt_options_are_refused_where_they_do_not_apply(fashion_run, tmp_path):
    from multidiff.recipes import get_recipe

    recipe = get_recipe("fashion_text")
    with pytest.raises(ValueError, match="prompts or a label"):
        recipe.sample(fashion_run, num=1, prompts=["a bag"], label=3)
    with pytest.raises(ValueError, match="at least one prompt"):
        recipe.sample(fashion_run, num=1, prompts=[])


def test_prompt_option_on_a_label_run_names_the_option(tmp_path):
    from multidiff.cli import main

    run = tmp_path / "toy"
    result = CliRunner().invoke(main, ["train", "toy2d", "--steps", "2", "--out", str(run), "--set", "num_eval=8"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["sample", str(run), "--prompt", "a bag", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "--prompt: recipe 'toy2d' does not take them" in result.output


@pytest.mark.requires("fluidsynth", "minilm")
def test_notes_text_trains_without_the_held_out_pairs_and_evaluates_them(tmp_path):
    from multidiff.recipes import get_recipe, make_config
    from multidiff.recipes.prompted.audio import DOMAIN

    recipe = get_recipe("notes_text")
    config = make_config(recipe, {"steps": 3, "batch_size": 8, "num_eval": 2, "prompts_per_class": 2,
                                  "preset": "tiny", "sample_every": 0, "checkpoint_every": 0, "sample_steps": 2,
                                  "threads": 1})
    data = DOMAIN.load_data(config)
    trained = DOMAIN.training_set(config, data)
    assert not any(held_out_combination(k) for k in trained["cond"].tolist())
    assert len(trained["cond"]) == sum(not held_out_combination(k) for k in data.train["label"].tolist())
    run = recipe.train(config, tmp_path / "run")
    report = json.loads((run / "eval.json").read_text())
    assert report["held_out_combinations"] == sum(held_out_combination(k) for k in range(150))
    for name in ("seen", "held_out_phrasing", "held_out_combination"):
        for metric in ("pitch_within_50_cents", "instrument_accuracy", "classifier_accuracy"):
            assert 0 <= report[f"{name}_{metric}"] <= 1
    drawn = recipe.sample(run, num=3, prompts=["MIDI 67 on the fiddle"], steps=2)
    paths = recipe.write_samples(drawn, tmp_path / "g", run)
    arrays = np.load(tmp_path / "g.npz")
    assert list(arrays["prompts"]) == ["MIDI 67 on the fiddle"] * 3 and int(arrays["sample_rate"]) == 16000
    assert arrays["samples"].shape[0] == 3 and arrays["spectrograms"].shape[:2] == (3, 1)
    assert sorted(p.name for p in (tmp_path / "g").iterdir())[0] == "0000-MIDI_67_on_the_fiddle.wav"
    assert len(paths) == 3


def test_notes_text_attends_to_the_prompt_where_its_config_says():
    from multidiff.recipes import get_recipe, make_config
    from multidiff.recipes.prompted.audio import build_model

    recipe = get_recipe("notes_text")
    for where, pooled in (("mid", True), ("up", False)):
        config = make_config(recipe, {"preset": "tiny", "cross_attention": where, "pooled_context": pooled})
        backbone = build_model(config).backbone
        assert backbone.config.cross_attention == where and (backbone.pool is not None) == pooled
        assert (backbone.block_cross is not None) == (where != "mid")
    with pytest.raises(ValueError, match="cross_attention must be one of mid, up, all, got 'sideways'"):
        make_config(recipe, {"cross_attention": "sideways"})
    wide = build_model(make_config(recipe, {"preset": "tiny", "cross_attention": "all", "top_width": "24"})).backbone
    assert wide.config.level_channels[0] == 24 and wide.conv_out.in_channels == 24  # top_width reaches it too


def test_notes_text_reads_the_input_layer_too_and_older_runs_the_last_alone(tmp_path):
    from multidiff.recipes import get_recipe, make_config
    from multidiff.recipes.prompted.audio import DOMAIN

    recipe = get_recipe("notes_text")
    assert make_config(recipe, {}).text_states == "last+input"
    assert make_config(get_recipe("fashion_text"), {}).text_states == "last"  # measured for notes only
    with pytest.raises(ValueError, match="text_states must be one of last, last\\+input, got 'first'"):
        make_config(recipe, {"text_states": "first"})
    saved = {"recipe": "notes_text", "preset": "tiny", "steps": 5}  # a config.json from before the field
    assert DOMAIN.config_from_saved(tmp_path, saved).text_states == "last"
    assert DOMAIN.config_from_saved(tmp_path, {**saved, "text_states": "last+input"}).text_states == "last+input"


def test_notes_text_dropout_reaches_the_residual_blocks_and_is_checked():
    from multidiff.recipes import get_recipe, make_config
    from multidiff.recipes.prompted.audio import build_model

    recipe = get_recipe("notes_text")

    def rates(**options):
        model = build_model(make_config(recipe, {"preset": "tiny", **options}))
        return {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}

    assert rates() == {0.0} and rates(dropout="0.1") == {0.1}
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.5"):
        make_config(recipe, {"dropout": "1.5"})
