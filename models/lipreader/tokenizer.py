"""Characters <-> CTC labels for the lip reader.

Index 0 is the CTC blank, 1 the word separator "|", then a-z and the apostrophe. Text is
lower-cased; any other character (digits are spelled out by the corpus, punctuation) is
dropped, and runs of spaces become one separator. The vocabulary list is what the
manifest records and what the runtime's CTC decoders take (runtime/decoding/ctc.py).
"""

from __future__ import annotations

BLANK = "<blank>"
SEPARATOR = "|"
VOCAB: tuple[str, ...] = (BLANK, SEPARATOR, *"abcdefghijklmnopqrstuvwxyz'")
_INDEX = {c: i for i, c in enumerate(VOCAB)}


def normalize(text: str) -> str:
    """Lower case, letters and apostrophes only, single spaces."""
    kept = "".join(c if c.isalpha() or c == "'" else " " for c in text.lower())
    return " ".join(w for w in (w.strip("'") for w in kept.split()) if w and w.isascii())


def encode(text: str) -> list[int]:
    """Text -> label indices (no blanks; "|" between words)."""
    return [_INDEX[SEPARATOR if c == " " else c] for c in normalize(text)]


def decode(labels) -> str:
    """Label indices (blanks and separators allowed) -> text, no CTC collapsing."""
    return "".join(" " if VOCAB[i] == SEPARATOR else VOCAB[i] for i in labels
                   if i != 0).strip()
