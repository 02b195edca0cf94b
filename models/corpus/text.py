"""Text for the corpus: a GRID-like command grammar (lip reading) and free sentences
(speech extraction). Deterministic given a numpy Generator.

GRID (Cooke et al. 2006) sentences are "command colour preposition letter digit
adverb", 51 words in all; we spell digits out and keep the letter as a single capital so
every synthesizer reads it as a letter name.
"""

from __future__ import annotations

import numpy as np

COMMANDS = ["bin", "lay", "place", "set"]
COLOURS = ["blue", "green", "red", "white"]
PREPOSITIONS = ["at", "by", "in", "with"]
LETTERS = [c for c in "ABCDEFGHIJKLMNOPQRSTUVXYZ"]  # GRID leaves out W (three syllables)
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ADVERBS = ["again", "now", "please", "soon"]
GRID_SLOTS = [COMMANDS, COLOURS, PREPOSITIONS, LETTERS, DIGITS, ADVERBS]
GRID_VOCAB = sorted({w.lower() for slot in GRID_SLOTS for w in slot})  # 51 words

# Free sentences: subject verb object [place] [time], with enough words for phonetic
# coverage (every English consonant and vowel appears in these lists).
SUBJECTS = ["the driver", "my neighbour", "a young doctor", "the old fisherman", "our teacher",
            "the children", "this machine", "her brother", "the judge", "a quiet student",
            "the pilot", "every visitor", "the baker", "your cousin", "the shepherd"]
VERBS = ["carried", "painted", "bought", "found", "watched", "washed", "measured", "fixed",
         "threw", "pushed", "borrowed", "cooked", "chose", "joined", "visited", "loved"]
OBJECTS = ["a heavy box", "the yellow boat", "three small chairs", "the broken watch",
           "some fresh bread", "a thick book", "the leather shoes", "a large map",
           "the garden gate", "a cup of tea", "the shiny coins", "a jar of jam", "the purple vase",
           "his thin jacket", "the rough rope", "a bag of oranges"]
PLACES = ["near the river", "in the kitchen", "at the station", "behind the church",
          "on the bridge", "under the tree", "by the window", "across the valley",
          "inside the museum", "beside the fountain"]
TIMES = ["this morning", "last winter", "before lunch", "every Sunday", "after the storm",
         "at midnight", "yesterday", "on Thursday", "during the show"]


def grid_sentence(rng: np.random.Generator) -> str:
    return " ".join(slot[rng.integers(len(slot))] for slot in GRID_SLOTS) + "."


def free_sentence(rng: np.random.Generator) -> str:
    parts = [SUBJECTS[rng.integers(len(SUBJECTS))], VERBS[rng.integers(len(VERBS))],
             OBJECTS[rng.integers(len(OBJECTS))]]
    if rng.random() < 0.7:
        parts.append(PLACES[rng.integers(len(PLACES))])
    if rng.random() < 0.5:
        parts.append(TIMES[rng.integers(len(TIMES))])
    s = " ".join(parts)
    return s[0].upper() + s[1:] + "."


def sentence(rng: np.random.Generator, kind: str) -> str:
    """kind: "grid" or "free"."""
    return grid_sentence(rng) if kind == "grid" else free_sentence(rng)
