"""The lip reader's decoding constraints from the corpus (models/corpus/text.py): the word
list (every word of the GRID commands and of the free sentences) and the grammar (the two
sentence forms, slot by slot: runtime/decoding/grammar.py).

Both ship in each exported artifact's manifest (extra.lexicon, extra.grammar), so the
runtime needs no models/ import; `avedge lipread --lexicon FILE` / `--grammar FILE`
replace them with a user's.
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


def corpus_grammar() -> dict:
    """The corpus's sentence forms as grammar JSON: the GRID command (six slots) and the
    free sentence (subject verb object, then an optional place and an optional time)."""
    def slot(phrases, optional=False):
        return {"phrases": list(dict.fromkeys(normalize(p) for p in phrases)),
                "optional": optional}

    grid = [slot(s) for s in text.GRID_SLOTS]
    free = [slot(text.SUBJECTS), slot(text.VERBS), slot(text.OBJECTS),
            slot(text.PLACES, optional=True), slot(text.TIMES, optional=True)]
    return {"forms": [grid, free]}


def corpus_constraints() -> dict:
    """The corpus's word list and parsed grammar, as `train.score` takes them
    (lexicon=, grammar=)."""
    from avedge.runtime.decoding.grammar import Grammar

    return {"lexicon": corpus_lexicon(), "grammar": Grammar.from_json(corpus_grammar())}
