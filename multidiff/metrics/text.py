"""Metrics for generated text, where a sentence is a list of lowercase words.

| metric | measures | range, better |
| --- | --- | --- |
| ``KneserNeyLM(n).fit(train).perplexity(samples)`` | fluency under an n-gram LM of the training text | >= 1, lower |
| ``distinct_n(samples, n)`` | diversity: unique / all n-grams (Li et al. 2016) | [0, 1], higher |
| ``copy_rate(samples, training)`` | memorisation: share that is a training sentence verbatim | [0, 1], lower |
| ``length_accuracy(samples, lengths)`` | length control: share with the requested word count | [0, 1], higher |
| ``keyword_success(samples, keywords)`` | lexical control: share containing their keyword | [0, 1], higher |
| ``infill_accuracy(filled, originals, masks)`` | infilling: share of filled words that are right | [0, 1], higher |
| ``grammar_rate(samples)`` | grammaticality: share link-grammar parses completely, no word skipped | [0, 1], higher |

Perplexity is ``exp(-sum of log p / predicted tokens)``, each sentence's
closing ``</s>`` counted as a token.

The language model is interpolated *modified* Kneser-Ney, with three
discounts D1, D2, D3+ (Chen & Goodman 1998, TR-10-98, "modified Kneser-Ney
smoothing"; also CSL 13, 1999). With ``a(h w)`` the count of ``w`` after
history ``h``,

    P(w | h) = max(a(h w) - D(a(h w)), 0) / a(h .) + gamma(h) P(w | h'),
    gamma(h) = (D1 N1(h .) + D2 N2(h .) + D3+ N3+(h .)) / a(h .),

where ``h'`` drops the oldest word of ``h`` and ``Nk(h .)`` is the number of
words seen exactly ``k`` (``3+``: at least 3) times after ``h``. ``a`` is the
raw count at the highest order and the continuation count ``N1+(. h w)`` (the
number of distinct words seen before ``h w``) below it, except for n-grams
that start with ``<s>``: nothing but padding can precede them, so they keep
their raw counts (as KenLM and SRILM do).

A history never seen in training backs off with weight 1, and so does one
that starts with two ``<s>``: it says no more than the same history with one
``<s>``, and modelling it as an order of its own would discount the
sentence-start counts once per extra ``<s>`` (on WordNet glosses that made a
4-gram model worse than a trigram).

The discounts of each order come from that order's count-of-counts
``n1 .. n4`` (Chen & Goodman's estimate): ``Y = n1 / (n1 + 2 n2)``,
``Dk = k - (k + 1) Y n(k+1) / nk``. Where a count-of-count is zero or the
estimate leaves ``(0, k]`` (tiny or highly repetitive corpora), ``Dk`` falls
back to ``k / 2``; keeping ``Dk <= k`` is what makes ``gamma`` exactly the
mass the discounts remove.

The recursion ends in a uniform distribution over the predictable words
``W`` = training words + ``</s>`` + ``<unk>``, so every word, including
``<unk>`` (which stands for any word not seen in training), has a
probability > 0, and the probabilities over ``W`` sum to 1 for every history.
"""

from __future__ import annotations

import math
import random
import shutil
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def _as_sentence(sentence, index: int) -> tuple[str, ...]:
    if isinstance(sentence, str):
        raise TypeError(f"sentence {index} is a string ({sentence[:40]!r}); pass a list of words, e.g. text.split()")
    words = tuple(sentence)
    if not all(isinstance(word, str) for word in words):
        raise TypeError(f"sentence {index} contains a word that is not a string: {words[:10]!r}")
    return words


def _discounts(counts: Iterable[int]) -> tuple[float, float, float]:
    """Modified-KN discounts ``(D1, D2, D3+)`` of one order from its counts
    (Chen & Goodman 1998), falling back to ``k / 2`` where undefined."""
    count_of_counts = Counter(count for count in counts if count <= 4)
    n = [count_of_counts[k] for k in range(5)]  # n[k] = number of n-grams seen exactly k times
    y = n[1] / (n[1] + 2 * n[2]) if n[1] > 0 and n[2] > 0 else None
    discounts = []
    for k in (1, 2, 3):
        estimate = k - (k + 1) * y * n[k + 1] / n[k] if y is not None and n[k] > 0 else 0.0
        discounts.append(estimate if 0.0 < estimate <= k else k / 2)
    return discounts[0], discounts[1], discounts[2]


class KneserNeyLM:
    """Interpolated modified Kneser-Ney n-gram LM (Chen & Goodman 1998); see the module docstring.

    ``order`` is n: a word is predicted from the ``order - 1`` words before it.
    Sentences are padded with ``order - 1`` ``<s>`` on the left and end with a
    predicted ``</s>``; words not seen in training are scored as ``<unk>``.
    ``order=1`` is an interpolated unigram, ``P(w) = (c(w) - D(c(w))) / N +
    gamma / |W|`` with raw counts ``c`` (``0`` for unseen words, which take no
    discount), ``N`` training tokens (``</s>`` included) and the freed mass
    ``gamma = sum_w D(c(w)) / N`` spread uniformly over ``W``.
    """

    def __init__(self, order: int = 3):
        if isinstance(order, bool) or not isinstance(order, int):
            raise TypeError(f"order must be an int, got {order!r}")
        if order < 1:
            raise ValueError(f"order must be >= 1 (1 = unigram, 3 = trigram), got {order}")
        self.order = order
        self.discounts: dict[int, tuple[float, float, float]] = {}  # n-gram length -> (D1, D2, D3+)
        self.vocabulary: frozenset[str] = frozenset()  # W: training words, </s> and <unk>
        self._alpha: dict[tuple[str, ...], float] = {}  # n-gram -> discounted probability term
        self._gamma: dict[tuple[str, ...], float] = {}  # history -> back-off weight
        self._uniform = 0.0
        self._fitted = False

    def fit(self, sentences: Iterable[Sequence[str]]) -> KneserNeyLM:
        """Count the n-grams of ``sentences`` and precompute every probability term; returns self."""
        n = self.order
        padding = (BOS,) * (n - 1)
        top = Counter()  # raw counts of the highest-order n-grams
        num_sentences = 0
        for index, sentence in enumerate(sentences):
            words = _as_sentence(sentence, index)
            if BOS in words or EOS in words:
                raise ValueError(f"sentence {index} contains {BOS!r} or {EOS!r}; the model adds the boundaries itself")
            padded = padding + words + (EOS,)
            top.update(zip(*(padded[start:] for start in range(n))))
            num_sentences += 1
        if num_sentences == 0:
            raise ValueError("fit() needs at least one training sentence, got none")

        counts = {n: top}  # n-gram length -> adjusted count a(.)
        for length in range(n - 1, 0, -1):
            lower = Counter()
            for gram, count in counts[length + 1].items():
                suffix = gram[1:]
                lower[suffix] += count if suffix[0] == BOS else 1  # <s>-initial n-grams keep raw counts
            counts[length] = lower

        self.vocabulary = frozenset(gram[0] for gram in counts[1]) | {UNK}
        self._uniform = 1.0 / len(self.vocabulary)
        self._alpha, self._gamma, self.discounts = {}, {}, {}
        for length, level in counts.items():
            # "<s> <s> ..." repeats the distribution of "<s> ..." one order down; a second
            # level would discount it twice, so such histories back off with weight 1.
            level = {gram: count for gram, count in level.items() if gram[:2] != (BOS, BOS)}
            d1, d2, d3 = self.discounts[length] = _discounts(level.values())
            total = defaultdict(int)  # history -> a(h .)
            freed = defaultdict(float)  # history -> D1 N1(h .) + D2 N2(h .) + D3+ N3+(h .)
            for gram, count in level.items():
                discount = d1 if count == 1 else d2 if count == 2 else d3
                total[gram[:-1]] += count
                freed[gram[:-1]] += discount
            for gram, count in level.items():
                discount = d1 if count == 1 else d2 if count == 2 else d3
                self._alpha[gram] = (count - discount) / total[gram[:-1]]
            for history, mass in freed.items():
                self._gamma[history] = mass / total[history]
        self._fitted = True
        return self

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError("this KneserNeyLM has not been fitted; call .fit(training_sentences) first")

    def _prob(self, word: str, history: tuple[str, ...]) -> float:
        """P(word | history) for a mapped word and a mapped history of exactly order - 1 words."""
        alpha, gamma = self._alpha, self._gamma
        p = self._uniform
        for length in range(1, self.order + 1):
            context = history[len(history) - length + 1:]
            p = alpha.get(context + (word,), 0.0) + gamma.get(context, 1.0) * p
        return p

    def _map(self, word: str) -> str:
        return word if word in self.vocabulary or word == BOS else UNK

    def logprob(self, word: str, context: Sequence[str] = ()) -> float:
        """Natural log of P(word | context). Only the last ``order - 1`` words of
        ``context`` count; a shorter context is taken to start the sentence
        (padded with ``<s>``). Unseen words, in either place, count as ``<unk>``."""
        self._check_fitted()
        if word == BOS:
            raise ValueError(f"{BOS!r} is never predicted; it only pads the context")
        if isinstance(context, str):
            raise TypeError(f"context must be a tuple of words, got the string {context!r}")
        history = tuple(context)[-(self.order - 1):] if self.order > 1 else ()
        history = (BOS,) * (self.order - 1 - len(history)) + tuple(self._map(token) for token in history)
        return math.log(self._prob(self._map(word), history))

    def sentence_logprob(self, sentence: Sequence[str]) -> float:
        """Natural log-probability of a whole sentence, its closing ``</s>`` included."""
        self._check_fitted()
        words = _as_sentence(sentence, 0)
        if BOS in words:
            raise ValueError(f"the sentence contains {BOS!r}; the model adds the boundaries itself")
        padded = (BOS,) * (self.order - 1) + tuple(map(self._map, words)) + (EOS,)
        width = self.order - 1
        return sum(math.log(self._prob(padded[i], padded[i - width:i]))
                   for i in range(width, len(padded)))

    def sample(self, num: int, rng: random.Random, max_words: int | None = None) -> list[tuple[str, ...]]:
        """``num`` sentences drawn word by word from the model, left to right, each word from
        ``P(w | the last order - 1 words)`` over the training vocabulary and ``</s>`` (``<unk>`` is
        never drawn: the rest is renormalised). A sentence ends at ``</s>`` or, if ``max_words`` is
        given, after that many words."""
        self._check_fitted()
        if num < 0 or (max_words is not None and max_words < 1):
            raise ValueError(f"need num >= 0 and max_words >= 1, got {num} and {max_words}")
        words = sorted(self.vocabulary - {UNK})
        out = []
        for _ in range(num):
            history, sentence = (BOS,) * (self.order - 1), []
            while max_words is None or len(sentence) < max_words:
                context = history[len(history) - self.order + 1:] if self.order > 1 else ()
                word = rng.choices(words, weights=[self._prob(w, context) for w in words])[0]
                if word == EOS:
                    break
                sentence.append(word)
                history = history + (word,)
            out.append(tuple(sentence))
        return out

    @staticmethod
    def token_count(sentences: Iterable[Sequence[str]]) -> int:
        """Number of predicted tokens in ``sentences``: every word plus one ``</s>`` each."""
        return sum(len(sentence) + 1 for sentence in sentences)

    def perplexity(self, sentences: Iterable[Sequence[str]]) -> float:
        """``exp(-sum of sentence log-probs / token_count)`` over ``sentences``."""
        self._check_fitted()
        sentences = list(sentences)
        if not sentences:
            raise ValueError("perplexity() needs at least one sentence, got none")
        total = sum(self.sentence_logprob(sentence) for sentence in sentences)
        return math.exp(-total / self.token_count(sentences))


def _check_pair(name_a: str, a: list, name_b: str, b: list) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} must have the same length, got {len(a)} and {len(b)}")
    if not a:
        raise ValueError(f"{name_a} is empty; a share of nothing is undefined")


def distinct_n(sentences: Iterable[Sequence[str]], n: int) -> float:
    """Distinct-n (Li et al. 2016, Sec. 4.3): unique n-grams / all n-grams, pooled
    over all sentences; 0.0 when no sentence has n words."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [tuple(sentence[i:i + n]) for index, sentence in enumerate(sentences)
             for i in range(len(_as_sentence(sentence, index)) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def copy_rate(samples: Iterable[Sequence[str]], training: Iterable[Sequence[str]]) -> float:
    """Share of samples that appear verbatim (as space-joined words) in ``training``."""
    samples = [" ".join(_as_sentence(sample, index)) for index, sample in enumerate(samples)]
    if not samples:
        raise ValueError("samples is empty; a share of nothing is undefined")
    seen = {" ".join(_as_sentence(sentence, index)) for index, sentence in enumerate(training)}
    return sum(sample in seen for sample in samples) / len(samples)


def length_accuracy(sentences: Iterable[Sequence[str]], lengths: Iterable[int]) -> float:
    """Share of sentences with exactly the requested number of words."""
    sentences, lengths = list(sentences), list(lengths)
    _check_pair("sentences", sentences, "lengths", lengths)
    hits = sum(len(_as_sentence(sentence, index)) == length
               for index, (sentence, length) in enumerate(zip(sentences, lengths)))
    return hits / len(sentences)


def _contains(words: tuple[str, ...], keyword: Sequence[str]) -> bool:
    width = len(keyword)
    return any(words[i:i + width] == keyword for i in range(len(words) - width + 1))


def keyword_success(sentences: Iterable[Sequence[str]], keywords: Iterable[str]) -> float:
    """Share of sentences that contain their keyword as a whole word; a keyword
    with spaces must appear as that contiguous word sequence."""
    sentences, keywords = list(sentences), list(keywords)
    _check_pair("sentences", sentences, "keywords", keywords)
    hits = 0
    for index, (sentence, keyword) in enumerate(zip(sentences, keywords)):
        if not isinstance(keyword, str) or not keyword.split():
            raise ValueError(f"keyword {index} must be a non-empty string, got {keyword!r}")
        hits += _contains(_as_sentence(sentence, index), tuple(keyword.split()))
    return hits / len(sentences)


def infill_accuracy(filled: Iterable[Sequence[str]], originals: Iterable[Sequence[str]],
                    masks: Iterable[Sequence[bool]]) -> float:
    """Share of the model-filled positions (``mask`` True) whose word equals the
    original one, pooled over all sentences (long sentences weigh more)."""
    filled, originals, masks = list(filled), list(originals), list(masks)
    _check_pair("filled", filled, "originals", originals)
    _check_pair("filled", filled, "masks", masks)
    correct = total = 0
    for index, (sentence, original, mask) in enumerate(zip(filled, originals, masks)):
        sentence, original, mask = _as_sentence(sentence, index), _as_sentence(original, index), tuple(mask)
        if not len(sentence) == len(original) == len(mask):
            raise ValueError(f"sentence {index}: filled, original and mask must have the same number of positions, "
                             f"got {len(sentence)}, {len(original)} and {len(mask)}")
        for word, truth, to_fill in zip(sentence, original, mask):
            if to_fill:
                total += 1
                correct += word == truth
    if total == 0:
        raise ValueError("no position is masked (True) in masks; infill accuracy is undefined")
    return correct / total


# ---------------------------------------------------------------- grammaticality (link-grammar)

LINK_PARSER = "link-parser"  # Debian's link-grammar + link-grammar-dictionaries-en
LINK_GRAMMAR_MISSING = ("no grammar_rate: link-parser is not installed (apt-get install link-grammar "
                        "link-grammar-dictionaries-en)")


def link_parser_available(parser: str = LINK_PARSER) -> bool:
    return shutil.which(parser) is not None


def complete_parses(sentences: Iterable[Sequence[str] | str], *, parser: str = LINK_PARSER,
                    timeout_per_sentence: int = 10) -> list[bool]:
    """For each sentence, whether link-grammar's English dictionary parses it completely: a linkage
    with no word left out (``-null=0``). This tells word salad made of locally plausible pairs, which a
    trigram scores well, from sentences; real WordNet examples parse about 0.8 of the time. One
    ``link-parser`` process reads them all. An empty sentence does not parse. FileNotFoundError when
    ``parser`` is not installed."""
    if not link_parser_available(parser):
        raise FileNotFoundError(LINK_GRAMMAR_MISSING)
    # a leading "!" is a link-parser command, not text; newlines would split a sentence
    texts = [" ".join(s.split() if isinstance(s, str) else s).lstrip("!").strip() for s in sentences]
    asked = [text for text in texts if text]
    verdicts: list[bool] = []
    if asked:
        run = subprocess.run([parser, "en", "-graphics=0", "-null=0", "-verbosity=1",
                              f"-timeout={timeout_per_sentence}"], input="\n".join(asked) + "\n",
                             capture_output=True, text=True, timeout=60 + timeout_per_sentence * len(asked))
        for line in run.stdout.splitlines():
            if line.startswith("Found ") and "linkage" in line:
                verdicts.append(True)
            elif line.startswith("No complete linkages found"):
                verdicts.append(False)
        if len(verdicts) != len(asked):
            raise RuntimeError(f"link-parser answered {len(verdicts)} of {len(asked)} sentences "
                               f"(exit {run.returncode}: {run.stderr.strip()[-300:]})")
    answers = iter(verdicts)
    return [bool(text) and next(answers) for text in texts]


def grammar_rate(sentences: Iterable[Sequence[str] | str], **options) -> float:
    """The share of ``sentences`` link-grammar parses completely (see :func:`complete_parses`)."""
    verdicts = complete_parses(sentences, **options)
    if not verdicts:
        raise ValueError("grammar_rate of no sentences is undefined")
    return sum(verdicts) / len(verdicts)
