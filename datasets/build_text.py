"""Build the shipped text copies in datasets/text/ from the Debian packages on this machine.

    python datasets/build_text.py              # both: wordnet_examples.txt.gz and fortunes.txt.gz
    python datasets/build_text.py wordnet      # one

Each file is the source's cleaned, distinct, sorted sentences (multidiff.data.text), one a line,
without those over SHIPPED_MAX_WORDS words, gzip-compressed with a zero timestamp so a rebuild
from the same packages gives the same bytes. Its first lines (starting with "#") name the source
and carry the licence notice copied from the package's Debian copyright file.
Needs: sudo apt-get install wordnet-base fortunes
"""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

from multidiff.atomic import atomic_write_bytes
from multidiff.data import text as T

COPYRIGHT_FILES = {"wordnet": Path("/usr/share/doc/wordnet-base/copyright"),
                   "fortunes": Path("/usr/share/doc/fortunes-min/copyright")}
TITLES = {"wordnet": "WordNet 3.0 gloss example sentences (data.noun, data.verb, data.adj, data.adv), "
                     "Debian package wordnet-base",
          "fortunes": "one-paragraph prose entries of the BSD fortune files, Debian packages fortunes-min "
                      "and fortunes"}


def wordnet_notice(copyright_text: str) -> list[str]:
    """The ``License: WordNet3.0`` paragraph of a machine-readable Debian copyright file."""
    lines = copyright_text.splitlines()
    start = lines.index("License: WordNet3.0") + 1
    notice = []
    for line in lines[start:]:
        if not line.startswith(" "):
            break
        notice.append("" if line.strip() == "." else line[1:])
    return notice


def bsd_notice(copyright_text: str) -> list[str]:
    """The BSD licence block of the fortune packages' copyright file ("Copyright (c) 1991 ..." to "SUCH DAMAGE.")."""
    lines = copyright_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Copyright (c) 1991 The Regents"))
    end = next(i for i, line in enumerate(lines) if i > start and line.strip() == "SUCH DAMAGE.")
    return lines[start:end + 1]


def notice(source: str) -> list[str]:
    path = COPYRIGHT_FILES[source]
    if not path.is_file():
        package = T.DEBIAN_PACKAGES[source]
        raise FileNotFoundError(f"{path} is missing; install it with `sudo apt-get install {package}`")
    text = path.read_text(encoding="utf-8")
    return wordnet_notice(text) if source == "wordnet" else bsd_notice(text)


def build(source: str) -> Path:
    sentences = [s for s in T.debian_sentences(source) if T.word_count(s) <= T.SHIPPED_MAX_WORDS]
    header = [f"{TITLES[source]}.",
              f"Cleaned by multidiff.data.text; {len(sentences)} sentences of at most {T.SHIPPED_MAX_WORDS} words, "
              f"sorted, one a line. Rebuild: python datasets/build_text.py {source}",
              f"Licence notice, from {COPYRIGHT_FILES[source]}:", "", *notice(source)]
    body = "".join(f"# {line}".rstrip() + "\n" for line in header) + "".join(s + "\n" for s in sentences)
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as packed:
        packed.write(body.encode("utf-8"))
    path = T.SHIPPED_DIR / T.SHIPPED_FILES[source]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    print(f"{path}: {len(sentences)} sentences, {path.stat().st_size / 1024:.0f} KiB")
    return path


def main(sources: list[str]) -> None:
    unknown = [s for s in sources if s not in T.TEXT_SOURCES]
    if unknown:
        raise SystemExit(f"unknown text source(s) {', '.join(unknown)}; choose from: {', '.join(T.TEXT_SOURCES)}")
    for source in sources or T.TEXT_SOURCES:
        try:
            build(source)
        except T.MissingTextSource as err:
            raise SystemExit(str(err)) from None


if __name__ == "__main__":
    main(sys.argv[1:])
