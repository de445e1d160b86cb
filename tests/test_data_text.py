"""Text data: cleaning, the WordNet and fortune readers, the shipped copies, splits, the cache and
your own file. Tests that read Debian's files skip naming the package; the rest use the shipped copies."""

import gzip

import pytest
import torch

from multidiff.data import text as T

needs_wordnet = pytest.mark.requires("wordnet")


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    """One cache for the tests that only read corpora, so each source is cleaned once per module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MULTIDIFF_CACHE", str(tmp_path_factory.mktemp("text-cache")))
        yield


@pytest.fixture(scope="module")
def corpus(module_cache):
    return T.build_text_corpus(("wordnet", "fortunes"), seed=0)


def texts(corpus) -> dict[str, list[str]]:
    return {name: getattr(corpus, name)["text"] for name in ("train", "validation", "test")}


# ---------------------------------------------------------------- cleaning


def test_words_drop_punctuation_and_keep_inner_apostrophes_and_hyphens():
    assert T.words("Hello, World! It's a well-known fact -- isn't it?") == [
        "hello", "world", "it's", "a", "well-known", "fact", "isn't", "it"]
    assert T.words("'Tis the dogs' (best) `friend'; 1,500 ... e-mail--now") == [
        "tis", "the", "dogs", "best", "friend", "1", "500", "e-mail", "now"]
    assert T.words("  ?!  ") == [] and T.clean("?!") == ""


def test_words_strip_accents_and_typographic_marks():
    assert T.words("Café DÉJÀ vu, naïve Zoë") == ["cafe", "deja", "vu", "naive", "zoe"]
    assert T.words("it\u2019s STRASSE Straße smørrebrød \ufb01ne") == ["it's", "strasse", "strasse", "smorrebrod",
                                                                     "fine"]
    assert T.words("Москва 東京 ok") == ["ok"]  # letters with no ASCII form are dropped


def test_clean_joins_words_and_is_idempotent():
    for raw in ["A  tall,\tdark stranger!", "Don't PANIC -- 42.", "Ça va? Très-bien."]:
        cleaned = T.clean(raw)
        assert cleaned == " ".join(T.words(raw)) and T.clean(cleaned) == cleaned
        assert T.word_count(cleaned) == len(T.words(raw))


# ---------------------------------------------------------------- readers


def test_wordnet_reader_takes_gloss_quotes_and_skips_the_licence_header(tmp_path):
    header = '  1 This software and database is "provided" to you\n  2 \n'
    for part in T.WORDNET_PARTS:
        lines = f'00001 03 {part[0]} 01 w 0 000 | a gloss; "an {part} example"; "shared example"\n'
        (tmp_path / f"data.{part}").write_bytes((header + lines).encode("latin-1"))
    (tmp_path / "data.adv").write_bytes((header + '00002 | quickly; "he ran caf\xe9-wards"\n').encode("latin-1"))
    assert T.read_wordnet_examples(tmp_path) == ["an noun example", "shared example", "an verb example",
                                                 "an adj example", "he ran caf\xe9-wards"]
    (tmp_path / "data.verb").unlink()
    with pytest.raises(T.MissingTextSource, match="data.verb.*apt-get install wordnet-base"):
        T.read_wordnet_examples(tmp_path)


def test_fortune_reader_keeps_one_paragraph_prose_only(tmp_path):
    entries = ["Be different: conform.",  # one speaker-like label is prose
               "Be cheerful while you are alive.\n\t\t-- Phathotep, 24th Century B.C.",
               "A long quote that\nwraps over two lines.\n    -- Someone,\n\tin some book",
               "Roses are red,\n\tviolets are blue.",  # verse
               "One paragraph.\n\nAnother paragraph.",
               "Q: Why?\nA: Because.",
               "<nick> hello\n<other> hi",
               "Broken \xff byte."]
    (tmp_path / "mix").write_bytes("\n%\n".join(entries).encode("latin-1") + b"\n%\n")
    (tmp_path / "mix.dat").write_bytes(b"\x00\x01")
    (tmp_path / "off").mkdir()
    (tmp_path / "off" / "rude").write_text("Never read.\n%\n")
    assert T.read_fortunes(tmp_path) == ["Be different: conform.", "Be cheerful while you are alive.",
                                         "A long quote that wraps over two lines.", "Broken \ufffd byte."]
    with pytest.raises(T.MissingTextSource, match="apt-get install fortunes-min"):
        T.read_fortunes(tmp_path / "off" / "missing")


@needs_wordnet
def test_debian_wordnet_has_over_40000_examples():
    examples = T.read_wordnet_examples(T.DEBIAN_ROOTS["wordnet"])
    assert len(examples) > 40_000 and len(set(examples)) == len(examples)
    assert "she was able to program her computer" in examples  # the gloss of "able" (data.adj)


@needs_wordnet
def test_shipped_wordnet_copy_matches_the_debian_files():
    shipped = T.read_shipped(T.SHIPPED_DIR / T.SHIPPED_FILES["wordnet"])
    assert shipped == [s for s in T.debian_sentences("wordnet") if T.word_count(s) <= T.SHIPPED_MAX_WORDS]


# ---------------------------------------------------------------- shipped copies


def test_shipped_copies_carry_their_licence_and_stay_small():
    for source, notice in [("wordnet", "WordNet 3.0 Copyright 2006 by Princeton University"),
                           ("fortunes", "Copyright (c) 1991 The Regents of the University of California")]:
        path = T.SHIPPED_DIR / T.SHIPPED_FILES[source]
        assert path.stat().st_size < 1 << 20  # under 1 MiB each, like the bundled classifiers
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            header = "".join(line for line in lines if line.startswith("#"))
        assert notice in header


def test_shipped_copies_are_used_without_the_debian_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIDIFF_CACHE", str(tmp_path / "cache"))
    for source in T.TEXT_SOURCES:
        monkeypatch.setitem(T.DEBIAN_ROOTS, source, tmp_path / "not-installed")
    corpus = T.build_text_corpus(("wordnet", "fortunes"))
    assert corpus.source.count("shipped copy") == 2
    assert all(len(split["text"]) > 0 and split["label"].bincount().tolist()[1] > 0
               for split in (corpus.train, corpus.validation, corpus.test))
    assert len(corpus.train["text"]) > 40_000


def test_a_missing_source_names_the_package_and_the_shipped_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIDIFF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(T.DEBIAN_ROOTS, "wordnet", tmp_path / "not-installed")
    monkeypatch.setattr(T, "SHIPPED_DIR", tmp_path / "not-shipped")
    with pytest.raises(T.MissingTextSource) as err:
        T.build_text_corpus(("wordnet",))
    assert "apt-get install wordnet-base" in str(err.value)
    assert str(tmp_path / "not-shipped" / "wordnet_examples.txt.gz") in str(err.value)


# ---------------------------------------------------------------- splits


def test_splits_are_disjoint_and_cover_both_labels(corpus):
    parts = texts(corpus)
    everything = [s for split in parts.values() for s in split]
    assert len(set(everything)) == len(everything)  # no sentence twice, within or across splits
    assert corpus.class_names == ("wordnet", "fortunes") and corpus.num_classes == 2
    for name, split in parts.items():
        labels = getattr(corpus, name)["label"]
        assert labels.dtype == torch.long and len(labels) == len(split)
        assert set(labels.tolist()) == {0, 1}


def test_labels_follow_sources_and_each_source_is_split_by_the_fractions(corpus, module_cache):
    sources = {name: set(T.source_sentences(name)[0]) for name in corpus.class_names}
    for name in ("train", "validation", "test"):
        split = getattr(corpus, name)
        for sentence, label in zip(split["text"], split["label"].tolist()):
            assert sentence in sources[corpus.class_names[label]]
            if label == 1:
                assert sentence not in sources["wordnet"]  # a sentence in both sources keeps the first
    for label in (0, 1):
        sizes = [int((getattr(corpus, name)["label"] == label).sum()) for name in ("train", "validation", "test")]
        assert sizes[1] == sizes[2] == round(0.05 * sum(sizes))


def test_splits_are_deterministic_in_the_seed(corpus, module_cache):
    again = T.build_text_corpus(("wordnet", "fortunes"), seed=0)
    other = T.build_text_corpus(("wordnet", "fortunes"), seed=1)
    assert texts(again) == texts(corpus)
    assert all(torch.equal(getattr(again, n)["label"], getattr(corpus, n)["label"]) for n in ("train", "test"))
    assert texts(other)["test"] != texts(corpus)["test"]
    assert sorted(sum(texts(other).values(), [])) == sorted(sum(texts(corpus).values(), []))


def test_adding_a_source_after_another_leaves_its_split_alone(corpus, module_cache):
    alone = T.build_text_corpus(("wordnet",), seed=0)
    for name in ("train", "validation", "test"):
        split = getattr(corpus, name)
        assert [s for s, y in zip(split["text"], split["label"]) if y == 0] == getattr(alone, name)["text"]


def test_length_filter(module_cache):
    short = T.build_text_corpus(("wordnet", "fortunes"), min_words=3, max_words=5)
    counts = [T.word_count(s) for split in texts(short).values() for s in split]
    assert min(counts) == 3 and max(counts) == 5
    with pytest.raises(ValueError, match="min_words"):
        T.build_text_corpus(("wordnet",), min_words=4, max_words=3)


def test_a_sentence_in_two_sources_goes_to_the_first(monkeypatch):
    fake = {"wordnet": ["a b", "c d", "e f", "shared words"], "fortunes": ["shared words", "g h", "i j", "k l"]}
    monkeypatch.setattr(T, "source_sentences", lambda name: (sorted(fake[name]), name))
    for order in [("wordnet", "fortunes"), ("fortunes", "wordnet")]:
        corpus = T.build_text_corpus(order, fractions=(0.5, 0.25, 0.25))
        pairs = [(s, corpus.class_names[int(y)]) for n in ("train", "validation", "test")
                 for s, y in zip(getattr(corpus, n)["text"], getattr(corpus, n)["label"])]
        assert sorted(pairs).count(("shared words", order[0])) == 1 and len(pairs) == 7


# ---------------------------------------------------------------- cache


def test_the_cache_is_read_on_the_second_build(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIDIFF_CACHE", str(tmp_path))
    first = T.build_text_corpus(("wordnet",), seed=3)
    cached = tmp_path / "text" / "wordnet.txt"
    assert cached.is_file() and cached.read_text().startswith("# multidiff-text")

    def no_reading(*args):
        raise AssertionError("the source was read again instead of the cache")

    monkeypatch.setattr(T, "debian_sentences", no_reading)
    monkeypatch.setattr(T, "read_shipped", no_reading)
    assert texts(T.build_text_corpus(("wordnet",), seed=3)) == texts(first)
    cached.write_text("# multidiff-text 0 stale\nnot a sentence\n")  # another format: rebuilt, not trusted
    with pytest.raises(AssertionError, match="read again"):
        T.build_text_corpus(("wordnet",), seed=3)


# ---------------------------------------------------------------- your own file


def test_a_text_file_is_cleaned_and_split(tmp_path):
    path = tmp_path / "mine.txt"
    lines = [f"Sentence number {i}, with a comma!" for i in range(20)] + ["", "Sentence number 0, with a comma."]
    path.write_text("\n".join(lines), encoding="utf-8")
    corpus = T.load_text_file(path, seed=1)
    parts = texts(corpus)
    assert corpus.class_names == ("file",) and sorted(sum(parts.values(), [])) == sorted(
        f"sentence number {i} with a comma" for i in range(20))
    assert [len(p) for p in parts.values()] == [18, 1, 1]
    assert all(int(getattr(corpus, n)["label"].sum()) == 0 for n in parts)


def test_text_file_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        T.load_text_file(tmp_path / "absent.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n   \n\t\n")
    with pytest.raises(ValueError, match="empty.txt.*no non-blank line"):
        T.load_text_file(empty)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("first line\ncaf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.txt.*byte 14 \(0xe9\).*must be UTF-8"):
        T.load_text_file(latin)
    long = tmp_path / "long.txt"
    long.write_text("\n".join(" ".join(f"w{i}" for i in range(n)) for n in (20, 25, 30)))
    with pytest.raises(ValueError, match="long.txt.*20 to 30 words.*raise max_words"):
        T.load_text_file(long, max_words=16)
    few = tmp_path / "few.txt"
    few.write_text("one sentence here\nanother one here\n")
    with pytest.raises(ValueError, match="few.txt.*at least 3"):
        T.load_text_file(few)


def test_load_text_dataset_by_name(tmp_path, module_cache):
    path = tmp_path / "mine.txt"
    path.write_text("\n".join(f"line {i}" for i in range(10)))
    assert T.load_text_dataset("file", root=str(path)).class_names == ("file",)
    assert T.load_text_dataset("wordnet_fortunes", max_words=4).class_names == ("wordnet", "fortunes")
    assert set(T.TEXT_DATASETS) == {*T.DATASET_SOURCES, "file"}
    with pytest.raises(ValueError, match="needs root"):
        T.load_text_dataset("file")
    with pytest.raises(ValueError, match="unknown text dataset 'shakespeare'.*wordnet_fortunes"):
        T.load_text_dataset("shakespeare")
    with pytest.raises(ValueError, match="only for the 'file'"):
        T.load_text_dataset("wordnet", root=str(path))
