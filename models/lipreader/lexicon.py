"""The word list the lip reader's lexicon decoder is constrained to by default: every word
of the corpus grammar (GRID commands) and of its free sentences (models/corpus/text.py).

It ships in each exported artifact's manifest (extra.lexicon), so the runtime needs no
models/ import; `avedge lipread --lexicon FILE` replaces it with a user's word list.
"""

from __future__ import annotations

from avedge.models.corpus import text
from avedge.models.lipreader.tokenizer import normalize


def corpus_lexicon() -> list[str]:
    phrases = [w for slot in text.GRID_SLOTS for w in slot]
    phrases += text.SUBJECTS + text.VERBS + text.OBJECTS + text.PLACES + text.TIMES
    return sorted({w for p in phrases for w in normalize(p).split()})


def grid_lexicon() -> list[str]:
    """The 51 GRID words only (the grammar of the lip-reading sentences)."""
    return sorted({normalize(w) for slot in text.GRID_SLOTS for w in slot})
