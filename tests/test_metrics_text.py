"""Text metrics: the Kneser-Ney language model and the sample-level shares."""

import math
import random
from collections import Counter

import pytest

from multidiff.metrics.text import (KneserNeyLM, copy_rate, distinct_n, infill_accuracy, keyword_success,
                                    length_accuracy)


def _markov_language(num_sentences, seed=0, num_words=30, successors=3):
    """Sentences from a sparse random bigram chain: each word has a few likely
    successors, so the language has structure an n-gram model can learn."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(num_words)]
    chain_rng = random.Random(1234)  # the language itself is fixed; only the draws depend on seed
    nexts = {word: chain_rng.sample(words, successors) for word in ["<s>"] + words}
    sentences = []
    for _ in range(num_sentences):
        sentence, word = [], "<s>"
        while len(sentence) < 12 and (len(sentence) < 2 or rng.random() > 0.2):
            word = rng.choice(nexts[word])
            sentence.append(word)
        sentences.append(sentence)
    return sentences


@pytest.fixture(scope="module")
def corpus():
    return _markov_language(400, seed=0)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_probabilities_sum_to_one_for_every_context(corpus, order):
    lm = KneserNeyLM(order).fit(corpus)
    vocabulary = {word for sentence in corpus for word in sentence} | {"</s>", "<unk>"}
    assert lm.vocabulary == vocabulary
    rng = random.Random(order)
    seen = sorted(vocabulary - {"</s>"})
    contexts = [(), ("<s>",), ("<s>", "<s>"), ("never", "seen"), ("w1", "never"), ("<unk>",)]
    contexts += [tuple(rng.choice(seen) for _ in range(rng.randint(1, 4))) for _ in range(30)]  # mostly unseen
    contexts += [tuple(sentence[:k]) for sentence in corpus[:10] for k in range(len(sentence))]  # seen
    for context in contexts:
        total = math.fsum(math.exp(lm.logprob(word, context)) for word in vocabulary)
        assert abs(total - 1.0) < 1e-9, (context, total)


def test_sentence_logprob_is_the_sum_of_its_word_logprobs(corpus):
    lm = KneserNeyLM(3).fit(corpus)
    sentence = corpus[5] + ["unseen"]
    padded = ["<s>", "<s>"] + sentence + ["</s>"]
    by_word = sum(lm.logprob(padded[i], tuple(padded[i - 2:i])) for i in range(2, len(padded)))
    assert lm.sentence_logprob(sentence) == pytest.approx(by_word, rel=1e-12)
    sentences = corpus[:20]
    total = sum(lm.sentence_logprob(s) for s in sentences)
    assert lm.token_count(sentences) == sum(len(s) for s in sentences) + len(sentences)
    assert lm.perplexity(iter(sentences)) == pytest.approx(math.exp(-total / lm.token_count(sentences)))


@pytest.mark.parametrize("order", [2, 3])
def test_training_sentence_beats_its_shuffle(corpus, order):
    lm = KneserNeyLM(order).fit(corpus)
    rng = random.Random(0)
    checked = 0
    for sentence in corpus:
        shuffled = sentence[:]
        rng.shuffle(shuffled)
        if shuffled != sentence:
            assert lm.sentence_logprob(sentence) > lm.sentence_logprob(shuffled), sentence
            checked += 1
    assert checked > 300


@pytest.mark.parametrize("order", [1, 2, 3])
def test_held_out_perplexity_exceeds_training_perplexity(corpus, order):
    lm = KneserNeyLM(order).fit(corpus)
    held_out = _markov_language(200, seed=1)
    assert lm.perplexity(corpus) < lm.perplexity(held_out)


def test_higher_order_helps_on_a_structured_language(corpus):
    held_out = _markov_language(200, seed=1)
    unigram, bigram = (KneserNeyLM(order).fit(corpus).perplexity(held_out) for order in (1, 2))
    assert bigram < unigram


def test_unseen_words_score_as_unk_with_a_finite_logprob(corpus):
    lm = KneserNeyLM(3).fit(corpus)
    for context in [(), ("w1",), ("w1", "w2"), ("zebra", "quagga")]:
        unseen = lm.logprob("zebra", context)
        assert math.isfinite(unseen)
        assert unseen == lm.logprob("<unk>", context) == lm.logprob("okapi", context)
        assert unseen < min(lm.logprob(word, context) for word in lm.vocabulary - {"<unk>"})
    assert math.isfinite(lm.sentence_logprob(["zebra", "quagga", "okapi"]))
    assert math.isfinite(lm.perplexity([["zebra"], []]))


def test_order_one_is_the_documented_interpolated_unigram(corpus):
    lm = KneserNeyLM(1).fit(corpus)
    counts = Counter(word for sentence in corpus for word in sentence + ["</s>"])
    total = sum(counts.values())
    d1, d2, d3 = lm.discounts[1]
    discount = {word: d1 if c == 1 else d2 if c == 2 else d3 for word, c in counts.items()}
    gamma = sum(discount.values()) / total
    for word in lm.vocabulary:
        expected = (counts[word] - discount.get(word, 0.0)) / total + gamma / len(lm.vocabulary)
        assert lm.logprob(word, ("any", "context")) == pytest.approx(math.log(expected), rel=1e-12)


def test_discounts_follow_the_count_of_counts():
    """Chen & Goodman Eq. 26 on a corpus with a Zipf-like tail; the fallback k / 2
    where the count-of-counts cannot support an estimate."""
    rng = random.Random(0)
    sentences = [[f"v{int(rng.paretovariate(1.0))}" for _ in range(6)] for _ in range(300)]
    counts = Counter(word for sentence in sentences for word in sentence + ["</s>"])
    n = Counter(counts.values())
    assert all(n[k] > 0 for k in (1, 2, 3, 4))
    y = n[1] / (n[1] + 2 * n[2])
    expected = [k - (k + 1) * y * n[k + 1] / n[k] for k in (1, 2, 3)]
    assert KneserNeyLM(1).fit(sentences).discounts[1] == pytest.approx(expected, rel=1e-12)
    assert KneserNeyLM(1).fit([["a", "b"]] * 50).discounts[1] == (0.5, 1.0, 1.5)  # every count is 50


def _bigram_by_hand(lm, corpus, left, word):
    """P(word | left) rebuilt from raw sentences: raw bigram counts on top,
    continuation counts (distinct left neighbours) below, the model's discounts."""
    bigrams = Counter(pair for s in corpus for pair in zip(["<s>"] + s, s + ["</s>"]))
    continuation = Counter(right for (_, right) in bigrams)

    def discounted(count, order):
        return count - lm.discounts[order][min(count, 3) - 1] if count else 0.0

    low_total = sum(continuation.values())
    low_gamma = sum(c - discounted(c, 1) for c in continuation.values()) / low_total
    unigram = discounted(continuation[word], 1) / low_total + low_gamma / len(lm.vocabulary)
    followers = {right: c for (first, right), c in bigrams.items() if first == left}
    total = sum(followers.values())
    gamma = sum(c - discounted(c, 2) for c in followers.values()) / total
    return discounted(followers.get(word, 0), 2) / total + gamma * unigram


def test_bigram_matches_the_formula_written_out(corpus):
    lm = KneserNeyLM(2).fit(corpus)
    for left in ["<s>", "w0", "w7", "w29"]:
        for word in lm.vocabulary:
            assert lm.logprob(word, (left,)) == pytest.approx(math.log(_bigram_by_hand(lm, corpus, left, word)),
                                                              rel=1e-12)


def test_repeated_sentence_start_padding_is_not_a_level_of_its_own(corpus):
    """In a trigram model the first word is predicted by the "<s> w" counts alone:
    "<s> <s> w" carries the same counts and must not discount them a second time."""
    lm = KneserNeyLM(3).fit(corpus)
    for word in lm.vocabulary:
        assert lm.logprob(word, ()) == pytest.approx(math.log(_bigram_by_hand(lm, corpus, "<s>", word)), rel=1e-12)


def test_bigram_perplexity_of_a_deterministic_language_tends_to_one():
    excess = []
    for repeats in (10, 100, 1000):
        sentences = [["a", "b", "c", "d"]] * repeats
        excess.append(KneserNeyLM(2).fit(sentences).perplexity(sentences) - 1.0)
    assert all(value > 0 for value in excess)
    # the discounted mass, and so the excess, shrinks like 1 / repeats
    assert excess[1] < excess[0] / 5 and excess[2] < excess[1] / 5


@pytest.mark.parametrize("order", [1, 2, 3])
def test_samples_follow_the_model_word_by_word(corpus, order):
    """Drawn sentences follow P(w | history) renormalised without <unk>: the first word's and the
    second word's frequencies (after a given first word) match the model within 5 standard errors;
    no <unk>; at most max_words words; the same seed draws the same sentences."""
    lm = KneserNeyLM(order).fit(corpus)
    drawn = lm.sample(3000, random.Random(0), max_words=6)
    assert len(drawn) == 3000 and all(len(s) <= 6 for s in drawn)
    assert all(w in lm.vocabulary and w not in ("<unk>", "</s>") for s in drawn for w in s)
    assert lm.sample(5, random.Random(3), max_words=6) == lm.sample(5, random.Random(3), max_words=6)

    def check(observed: Counter, total: int, context: tuple):
        p_unk = math.exp(lm.logprob("<unk>", context))
        for word in sorted(lm.vocabulary - {"<unk>"}):
            p = math.exp(lm.logprob(word, context)) / (1 - p_unk)
            assert abs(observed[word] / total - p) <= 5 * math.sqrt(p * (1 - p) / total) + 1e-9, (word, context)

    first = Counter(s[0] if s else "</s>" for s in drawn)
    check(first, len(drawn), ())
    head = next(word for word, _ in first.most_common() if word != "</s>")
    second = Counter(s[1] if len(s) > 1 else "</s>" for s in drawn if s and s[0] == head)
    check(second, sum(second.values()), (head,))
    unlimited = lm.sample(200, random.Random(1))
    assert max(map(len, unlimited)) > 6  # without max_words only the end word stops a sentence


def test_model_errors_name_the_problem(corpus):
    with pytest.raises(ValueError, match="order must be >= 1"):
        KneserNeyLM(0)
    with pytest.raises(TypeError, match="order must be an int"):
        KneserNeyLM("3")
    lm = KneserNeyLM(2)
    for score in (lambda: lm.logprob("a", ()), lambda: lm.sentence_logprob(["a"]), lambda: lm.perplexity([["a"]])):
        with pytest.raises(RuntimeError, match="call .fit"):
            score()
    with pytest.raises(ValueError, match="at least one training sentence"):
        KneserNeyLM(2).fit([])
    with pytest.raises(TypeError, match="list of words"):
        KneserNeyLM(2).fit(["a b c"])
    with pytest.raises(ValueError, match="adds the boundaries"):
        KneserNeyLM(2).fit([["a", "</s>", "b"]])
    lm.fit(corpus)
    with pytest.raises(ValueError, match="never predicted"):
        lm.logprob("<s>", ())
    with pytest.raises(ValueError, match="at least one sentence"):
        lm.perplexity([])
    with pytest.raises(ValueError, match="max_words >= 1"):
        lm.sample(3, random.Random(0), max_words=0)


def test_distinct_n_on_worked_examples():
    assert distinct_n([["a", "b", "a", "b"]], 1) == 2 / 4
    assert distinct_n([["a", "b", "a", "b"]], 2) == 2 / 3  # ab, ba, ab
    assert distinct_n([["a", "b"], ["a", "b"]], 2) == 1 / 2  # pooled over sentences, none across them
    assert distinct_n([["a", "b"], ["b", "a"]], 1) == 2 / 4
    assert distinct_n([["x", "y", "z"]], 3) == 1.0
    assert distinct_n([["a"], []], 2) == 0.0
    assert distinct_n([], 1) == 0.0
    with pytest.raises(ValueError, match="n must be >= 1"):
        distinct_n([["a"]], 0)


def test_copy_rate_on_worked_examples():
    training = [["the", "cat"], ["a", "dog", "ran"]]
    assert copy_rate([["the", "cat"], ["the", "dog"], ["a", "dog", "ran"], ["cat"]], training) == 2 / 4
    assert copy_rate([["the", "cat", "sat"]], training) == 0.0  # a prefix of the sample is not a copy
    assert copy_rate([["the", "cat"]], training) == 1.0
    with pytest.raises(ValueError, match="samples is empty"):
        copy_rate([], training)


def test_length_accuracy_on_worked_examples():
    assert length_accuracy([["a", "b"], ["a"], []], [2, 2, 0]) == 2 / 3
    with pytest.raises(ValueError, match="same length"):
        length_accuracy([["a"]], [1, 2])


def test_keyword_success_on_worked_examples():
    sentences = [["the", "cat", "sat"], ["a", "concatenation"], ["new", "york", "city"], ["york", "new"]]
    keywords = ["cat", "cat", "new york", "new york"]  # a keyword is a whole word, not a substring
    assert keyword_success(sentences, keywords) == 2 / 4
    with pytest.raises(ValueError, match="same length"):
        keyword_success(sentences, keywords[:2])
    with pytest.raises(ValueError, match="non-empty string"):
        keyword_success([["a"]], [""])


def test_infill_accuracy_pools_the_filled_positions():
    originals = [["the", "cat", "sat"], ["a", "dog"]]
    filled = [["the", "cow", "sat"], ["a", "dog"]]
    masks = [[False, True, True], [True, False]]
    # filled positions: cat->cow (wrong), sat (right), a (right); the unmasked words never count
    assert infill_accuracy(filled, originals, masks) == 2 / 3
    assert infill_accuracy([["x", "cat", "sat"]], [["the", "cat", "sat"]], [[False, True, True]]) == 1.0
    with pytest.raises(ValueError, match="same number of positions"):
        infill_accuracy([["the", "cat"]], [["the", "cat", "sat"]], [[True, True, True]])
    with pytest.raises(ValueError, match="same length"):
        infill_accuracy(filled, originals, masks[:1])
    with pytest.raises(ValueError, match="no position is masked"):
        infill_accuracy(filled, originals, [[False] * 3, [False] * 2])


# ---------------------------------------------------------------- grammaticality (link-grammar)


@pytest.mark.requires("link_grammar", "wordnet")
def test_real_sentences_parse_and_their_shuffles_do_not():
    """The check's point: the same words in a random order (salad a trigram may still like) parse far
    less often than the real sentence (measured: 0.70 of these 200 short held-out WordNet sentences
    against 0.17 of their shuffles)."""
    from multidiff.data.text import load_text_dataset
    from multidiff.metrics.text import complete_parses

    sentences = [s.split() for s in load_text_dataset("wordnet", max_words=8).test["text"][:200]]
    rng = random.Random(0)
    shuffled = [rng.sample(words, len(words)) for words in sentences]
    real, salad = complete_parses(sentences), complete_parses(shuffled)
    assert len(real) == len(salad) == len(sentences)
    assert sum(real) / len(real) > 0.6 > 0.3 > sum(salad) / len(salad)


@pytest.mark.requires("link_grammar")
def test_grammar_rate_counts_empty_and_command_like_sentences():
    from multidiff.metrics.text import complete_parses, grammar_rate

    verdicts = complete_parses(["the cat sat on the mat", "", "!the dog ran home", ["she", "was", "happy"],
                                "mat the on sat cat the"])
    assert verdicts == [True, False, True, True, False]
    assert grammar_rate(["the cat sat on the mat", "mat the on sat cat the"]) == 0.5
    with pytest.raises(ValueError, match="no sentences"):
        grammar_rate([])


def test_grammar_rate_without_the_parser_says_what_to_install():
    from multidiff.metrics.text import complete_parses

    with pytest.raises(FileNotFoundError, match="apt-get install link-grammar"):
        complete_parses(["the cat sat"], parser="no-such-link-parser")
