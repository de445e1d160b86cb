"""Rewrite one generated block of a docs page, between ``<!-- NAME:start -->``
and ``<!-- NAME:end -->``; the hand-written text around it stays as it is."""

from __future__ import annotations

from pathlib import Path


def write_block(doc: Path, name: str, block: str, *, append_if_missing: bool = False) -> None:
    """Put ``block`` between the ``name`` markers of ``doc``. Without the markers:
    append a new marked section when ``append_if_missing``, else raise SystemExit."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = doc.read_text() if doc.exists() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + start + "\n" + block + end + rest.split(end, 1)[1]
    elif append_if_missing:
        text = text.rstrip("\n") + "\n\n" + start + "\n" + block + end + "\n"
    else:
        raise SystemExit(f"{doc} has no {start} / {end} markers; add the section first")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
