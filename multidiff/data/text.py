"""Short English sentences for a Diffusion-LM-style text domain, with no download at run time.

==============  ================================================================================
``wordnet``     the example sentences quoted in WordNet 3.0's glosses ("we were at last able to
                buy a car"), about 48,000 distinct, from ``/usr/share/wordnet/data.{noun,verb,
                adj,adv}`` (Debian ``wordnet-base``)
``fortunes``    the one-paragraph prose entries of the BSD fortune files in
                ``/usr/share/games/fortunes`` (Debian ``fortunes-min`` has one file, ``fortunes``
                the other ~40); see :func:`read_fortunes` for what counts as prose
``file``        your own UTF-8 text file, one sentence a line (:func:`load_text_file`)
==============  ================================================================================

Where a Debian package is missing, its source is read from the compact copy shipped in
``datasets/text/`` (``wordnet_examples.txt.gz``, ``fortunes.txt.gz``: the cleaned, distinct,
sorted sentences of up to ``SHIPPED_MAX_WORDS`` words, rebuilt by ``python datasets/build_text.py``).

Cleaning (:func:`words`): accents are stripped (NFKD, combining marks dropped), text is
case-folded and cut into words ``[a-z0-9]+`` that may hold inner apostrophes and hyphens
("don't", "well-known"); all other punctuation goes. A cleaned sentence is its words joined
by single spaces, so its length in words is its number of spaces plus one.

Splits: :func:`build_text_corpus` keeps the sentences of ``min_words..max_words`` words,
gives a sentence found in two sources to the first one listed, and splits every source on
its own (train/validation/test by ``fractions``) with a generator seeded by ``seed`` and the
source's label, so every split holds every label and a source's split does not move when
another source is added after it.

Cache: each source's cleaned, distinct sentences (before the length filter and the split)
are kept in ``$MULTIDIFF_CACHE/text/<source>.txt`` (default ``~/.cache/multidiff/text``),
a plain text file whose first line records the cache format and the files it was made from
(their sizes and times); a cache made from other files is rebuilt, never trusted.

Licences: WordNet 3.0 is (c) 2006 Princeton University under the WordNet 3.0 licence, a
permissive one that asks for its copyright notice on every copy; the fortune files come
with BSD fortune(6) under the BSD licence. Both notices are in ``datasets/text/README.md``
and at the top of the shipped copies.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..atomic import atomic_write_bytes
from .cache import cache_dir

TEXT_SOURCES = ("wordnet", "fortunes")
TEXT_DATASETS = ("wordnet", "wordnet_fortunes", "fortunes", "file")
DATASET_SOURCES = {"wordnet": ("wordnet",), "wordnet_fortunes": ("wordnet", "fortunes"), "fortunes": ("fortunes",)}
DEBIAN_ROOTS = {"wordnet": Path("/usr/share/wordnet"), "fortunes": Path("/usr/share/games/fortunes")}
DEBIAN_PACKAGES = {"wordnet": "wordnet-base", "fortunes": "fortunes-min"}  # fortunes-min: 1 file; fortunes: ~40 more
WORDNET_PARTS = ("noun", "verb", "adj", "adv")
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "datasets" / "text"
SHIPPED_FILES = {"wordnet": "wordnet_examples.txt.gz", "fortunes": "fortunes.txt.gz"}
SHIPPED_MAX_WORDS = 40
CACHE_FORMAT = 1
MIN_SPLIT_LINES = 3  # one sentence for each of train, validation and test

_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
# typographic apostrophes and hyphens, and letters NFKD leaves without an ASCII base
_TRANSLITERATE = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u2010": "-", "\u2011": "-",
                                "\u00f8": "o", "\u00d8": "O", "\u00e6": "ae", "\u00c6": "AE", "\u0153": "oe",
                                "\u0152": "OE", "\u0142": "l", "\u0141": "L", "\u0111": "d", "\u0110": "D",
                                "\u00f0": "d", "\u00d0": "D", "\u00fe": "th", "\u00de": "TH", "\u0131": "i"})


class MissingTextSource(FileNotFoundError):
    """Neither the Debian package of a text source nor its shipped copy is on this machine."""


@dataclass(frozen=True)
class TextCorpus:
    """Cleaned sentences and their labels, split three ways (see the module docstring).

    ``train``, ``validation`` and ``test`` are ``{"text": [str ...], "label": (N,) int64}``;
    a label indexes ``class_names`` (the sources, or ``("file",)``).
    """

    train: dict = field(repr=False)
    validation: dict = field(repr=False)
    test: dict = field(repr=False)
    class_names: tuple[str, ...]
    source: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# ---------------------------------------------------------------- cleaning


def words(text: str) -> list[str]:
    """The lower-case ASCII words of ``text``: "Café au lait, don't!" -> ["cafe", "au", "lait", "don't"]."""
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATE))
        text = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _WORD.findall(text.casefold())


def clean(text: str) -> str:
    return " ".join(words(text))


def word_count(sentence: str) -> int:
    """Words in a *cleaned* sentence."""
    return sentence.count(" ") + 1 if sentence else 0


def cleaned_sentences(texts: Iterable[str]) -> list[str]:
    """Every text cleaned, empty ones dropped, distinct and sorted."""
    return sorted({sentence for sentence in map(clean, texts) if sentence})


# ---------------------------------------------------------------- Debian sources


def _missing(source: str, problem: str) -> MissingTextSource:
    shipped = SHIPPED_DIR / SHIPPED_FILES[source]
    return MissingTextSource(f"{problem}; install it with `sudo apt-get install {DEBIAN_PACKAGES[source]}` or "
                             f"restore the shipped copy {shipped} (`python datasets/build_text.py` rebuilds it)")


def _wordnet_files(root: Path) -> list[Path]:
    files = [root / f"data.{part}" for part in WORDNET_PARTS]
    missing = [path.name for path in files if not path.is_file()]
    if missing:
        raise _missing("wordnet", f"WordNet not found: {str(root)!r} lacks {', '.join(missing)}")
    return files


def _fortune_files(root: Path) -> list[Path]:
    files = sorted(path for path in root.iterdir() if path.is_file() and not path.name.startswith(".")
                   and not path.name.endswith((".dat", ".u8"))) if root.is_dir() else []
    if not files:
        raise _missing("fortunes", f"no fortune files in {str(root)!r}")
    return files


def read_wordnet_examples(root: str | Path = "/usr/share/wordnet") -> list[str]:
    """The distinct example sentences quoted in WordNet's glosses (noun, verb, adj, adv order).

    A synset line ends in ``| gloss; "example"; "example"``; the licence header's lines
    start with two spaces. The files are Latin-1. About 20 glosses have an unpaired quote:
    their quotes are paired left to right and what is left over is dropped.
    """
    examples: dict[str, None] = {}
    for path in _wordnet_files(Path(root)):
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith("  "):
                continue
            for quote in re.findall(r'"([^"]*)"', line.partition("|")[2]):
                if quote.strip():
                    examples.setdefault(quote.strip())
    return list(examples)


_ATTRIBUTION = re.compile(r"^\s*(--|\u2014)")
_SPEAKER = re.compile(r"^[A-Za-z][\w'.]*(?: [\w'.]+){0,2}:(\s|$)")  # "Q:", "A:", "Mr. Spock:"
_CHAT = re.compile(r"^(<[^>\s]+>|\* \S)")  # IRC: "<nick> ..." or "* nick does ..."


def _prose(entry: list[str]) -> str | None:
    """One fortune entry's text on one line, or None when it is not one paragraph of prose."""
    while entry and not entry[0].strip():
        entry = entry[1:]
    for i, line in enumerate(entry[1:], start=1):
        if _ATTRIBUTION.match(line):  # "-- Author" (possibly over several lines) ends the entry
            entry = entry[:i]
            break
    while entry and not entry[-1].strip():
        entry = entry[:-1]
    if not entry:
        return None
    if any(not line.strip() for line in entry):
        return None  # more than one paragraph
    if any(line.startswith(("\t", "    ")) for line in entry):
        return None  # verse, code, indented dialogue or ASCII art
    if sum(bool(_SPEAKER.match(line)) for line in entry) >= 2 or any(_CHAT.match(line) for line in entry):
        return None  # a dialogue or a chat log
    return " ".join(line.strip() for line in entry)


def read_fortunes(root: str | Path = "/usr/share/games/fortunes") -> list[str]:
    """The entries of every fortune file in ``root`` that are one paragraph of prose, distinct.

    Files are every plain file in ``root`` itself except the ``*.dat`` indexes and the ``*.u8``
    links (sub-folders such as ``off/`` are not read); entries are separated by lines holding
    only ``%``; bytes that are not UTF-8 become U+FFFD. A trailing attribution (from a line,
    not the first, that starts with optional spaces and ``--`` or an em dash) is cut off.
    An entry is then dropped when it has a blank line inside (several paragraphs), a line
    indented by a tab or 4+ spaces (verse, code, ASCII art), two or more lines that start with
    a speaker label and a colon ("Q:" / "A:"), or a chat-log line ("<nick>", "* nick").
    Lines of an entry are joined by spaces. About 12,000 of the ~15,000 entries stay.
    """
    entries: dict[str, None] = {}
    for path in _fortune_files(Path(root)):
        entry: list[str] = []
        for line in path.read_bytes().decode("utf-8", errors="replace").splitlines() + ["%"]:
            if line.strip() == "%":
                text = _prose(entry)
                if text:
                    entries.setdefault(text)
                entry = []
            else:
                entry.append(line.rstrip())
    return list(entries)


_READERS = {"wordnet": (read_wordnet_examples, _wordnet_files), "fortunes": (read_fortunes, _fortune_files)}


def debian_sentences(source: str) -> list[str]:
    """One source's cleaned, distinct, sorted sentences read from its Debian package (no cache)."""
    read, _ = _READERS[source]
    return cleaned_sentences(read(DEBIAN_ROOTS[source]))


# ---------------------------------------------------------------- shipped copies and the cache


def read_shipped(path: str | Path) -> list[str]:
    """The sentences of a shipped ``.txt.gz`` copy (lines starting with ``#`` are its licence notice)."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return cleaned_sentences(line for line in lines if not line.startswith("#"))


def _origin(source: str) -> tuple[str, list[Path]]:
    """Where ``source`` is read from now (``"debian"`` or ``"shipped"``) and the files it is read from."""
    _, list_files = _READERS[source]
    shipped = SHIPPED_DIR / SHIPPED_FILES[source]
    try:
        files = list_files(DEBIAN_ROOTS[source])
    except MissingTextSource as debian_error:
        if shipped.is_file():
            return "shipped", [shipped]
        raise debian_error from None
    if source == "fortunes" and len(files) < FULL_FORTUNE_FILES and shipped.is_file():
        # only fortunes-min (one file, a few hundred entries): the shipped copy of the full package is
        # the same data every machine gets
        return "shipped", [shipped]
    return "debian", files


FULL_FORTUNE_FILES = 10  # Debian's fortunes package has 43 files; fortunes-min alone has 1


def _fingerprint(files: list[Path]) -> str:
    stats = [f"{path} {path.stat().st_size} {path.stat().st_mtime_ns}" for path in files]
    return hashlib.sha256("\n".join(stats).encode()).hexdigest()[:16]


def _describe(source: str, origin: str, files: list[Path]) -> str:
    if origin == "debian":
        return f"{source}: {DEBIAN_ROOTS[source]} (Debian, {len(files)} files)"
    return f"{source}: {files[0]} (shipped copy)"


def source_sentences(source: str) -> tuple[list[str], str]:
    """(cleaned, distinct, sorted sentences of ``source``, where they came from), cached.

    The Debian package is read when it is installed, else the shipped copy.
    """
    if source not in TEXT_SOURCES:
        raise ValueError(f"unknown text source {source!r}; choose from: {', '.join(TEXT_SOURCES)}")
    origin, files = _origin(source)
    header = f"# multidiff-text {CACHE_FORMAT} {source} {origin} {_fingerprint(files)}"
    path = cache_dir("text") / f"{source}.txt"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []  # no cache yet, or a damaged one: rebuilt below
    if lines and lines[0] == header:
        return lines[1:], _describe(source, origin, files)
    sentences = debian_sentences(source) if origin == "debian" else read_shipped(files[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, "\n".join([header, *sentences, ""]).encode("utf-8"))
    return sentences, _describe(source, origin, files)


# ---------------------------------------------------------------- splits


def _check_options(min_words: int, max_words: int, fractions) -> tuple[float, float, float]:
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got min_words={min_words}, max_words={max_words}")
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be (train, validation, test) >= 0 with train > 0, summing to 1; "
                         f"got {fractions}")
    return fractions


def _split_indices(count: int, fractions, rng: np.random.Generator) -> list[np.ndarray]:
    """Sorted indices of train, validation and test; a split with a fraction > 0 gets at least one."""
    sizes = [max(1, round(f * count)) if f > 0 else 0 for f in fractions[1:]]
    if count - sum(sizes) < 1:
        raise ValueError(f"{count} sentences split by fractions {fractions} leave none for training; "
                         f"give more sentences or a larger train fraction")
    order = rng.permutation(count)
    edges = [count - sum(sizes), count - sizes[1]]
    return [np.sort(part) for part in np.split(order, edges)]


def _corpus(groups: list[tuple[str, list[str]]], seed: int, fractions, source: str) -> TextCorpus:
    splits = [{"text": [], "label": []} for _ in range(3)]
    for label, (name, sentences) in enumerate(groups):
        rng = np.random.default_rng([seed, label])
        for split, index in zip(splits, _split_indices(len(sentences), fractions, rng)):
            split["text"] += [sentences[i] for i in index]
            split["label"] += [label] * len(index)
    for split in splits:
        split["label"] = torch.tensor(split["label"], dtype=torch.long)
    return TextCorpus(*splits, class_names=tuple(name for name, _ in groups), source=source)


def _too_few(where: str, kept: int, counts: list[int], min_words: int, max_words: int) -> ValueError:
    found = f"its sentences have {min(counts)} to {max(counts)} words" if counts else "it has no words"
    if counts and max(counts) < min_words:
        fix = "lower min_words"
    else:
        fix = "raise max_words" if counts and min(counts) <= max_words else "lower min_words or raise max_words"
    return ValueError(f"{where}: {kept} distinct sentence(s) have {min_words} to {max_words} words, but the "
                      f"train/validation/test split needs at least {MIN_SPLIT_LINES} ({found}); {fix}")


def build_text_corpus(sources: Iterable[str] = ("wordnet",), *, seed: int = 0, max_words: int = 16,
                      min_words: int = 2, fractions=(0.9, 0.05, 0.05)) -> TextCorpus:
    """Sentences of ``min_words..max_words`` words from ``sources``; label = the source's index."""
    sources = tuple(sources)
    unknown = [name for name in sources if name not in TEXT_SOURCES]
    if not sources or unknown or len(set(sources)) != len(sources):
        raise ValueError(f"sources must be distinct names from {', '.join(TEXT_SOURCES)}; got {sources}")
    fractions = _check_options(min_words, max_words, fractions)
    seen: set[str] = set()
    groups, origins = [], []
    for name in sources:
        sentences, origin = source_sentences(name)
        kept = [s for s in sentences if min_words <= word_count(s) <= max_words and s not in seen]
        if len(kept) < MIN_SPLIT_LINES:
            raise _too_few(f"text source {name!r}", len(kept), [word_count(s) for s in sentences], min_words,
                           max_words)
        seen.update(kept)
        groups.append((name, kept))
        origins.append(origin)
    return _corpus(groups, seed, fractions, "; ".join(origins))


def load_text_file(path: str | Path, *, seed: int = 0, max_words: int = 16, min_words: int = 1,
                   fractions=(0.9, 0.05, 0.05)) -> TextCorpus:
    """Your UTF-8 text file, one sentence a line, as one class ``"file"`` (cleaned, distinct, split)."""
    path = Path(path)
    fractions = _check_options(min_words, max_words, fractions)
    if not path.is_file():
        raise FileNotFoundError(f"text file {str(path)!r} does not exist; pass a UTF-8 file with one sentence a line")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{str(path)!r} is not UTF-8: byte {err.start} (0x{data[err.start]:02x}) {err.reason}; the "
                         f"file must be UTF-8 text (convert it, e.g. with `iconv -f latin1 -t utf-8`)") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{str(path)!r} is empty: it has no non-blank line; write one sentence on each line")
    sentences = cleaned_sentences(lines)
    counts = [word_count(s) for s in sentences]
    kept = [s for s, count in zip(sentences, counts) if min_words <= count <= max_words]
    if len(kept) < MIN_SPLIT_LINES:
        raise _too_few(f"text file {str(path)!r}", len(kept), counts, min_words, max_words)
    return _corpus([("file", kept)], seed, fractions, f"file: {path}")


def load_text_dataset(name: str, *, root: str = "", seed: int = 0, max_words: int = 16) -> TextCorpus:
    """A dataset of ``TEXT_DATASETS`` by name; ``"file"`` reads the text file ``root``."""
    if name == "file":
        if not root:
            raise ValueError("the 'file' text dataset needs root=<path of a UTF-8 file, one sentence a line>")
        return load_text_file(root, seed=seed, max_words=max_words)
    if name not in DATASET_SOURCES:
        raise ValueError(f"unknown text dataset {name!r}; choose one of: {', '.join(TEXT_DATASETS)}")
    if root:
        raise ValueError(f"root= is only for the 'file' text dataset; {name!r} reads its Debian package or the "
                         f"copy shipped in {SHIPPED_DIR}")
    return build_text_corpus(DATASET_SOURCES[name], seed=seed, max_words=max_words)


__all__ = ["DEBIAN_ROOTS", "MissingTextSource", "SHIPPED_DIR", "TEXT_DATASETS", "TEXT_SOURCES", "TextCorpus",
           "build_text_corpus", "clean", "cleaned_sentences", "debian_sentences", "load_text_dataset",
           "load_text_file", "read_fortunes", "read_shipped", "read_wordnet_examples", "source_sentences",
           "word_count", "words"]
