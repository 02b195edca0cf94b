"""CTC decoding on synthetic log-prob matrices whose words sit at known frames."""

import numpy as np
import pytest
from avedge.runtime.decoding import beam, greedy
from avedge.runtime.errors import InputError

VOCAB = ["<blank>", "|", *"abcdefghijklmnopqrstuvwxyz'"]
INDEX = {c: i for i, c in enumerate(VOCAB)}
SENTENCE = "bin blue at f two now"
# A GRID-like grammar's words (command, colour, preposition, letter, digit, adverb).
GRID = ["bin", "lay", "place", "set", "blue", "green", "red", "white", "at", "by", "in", "with",
        *"abcdefghijklmnopqrstuvxyz", "zero", "one", "two", "three", "four", "five", "six",
        "seven", "eight", "nine", "again", "now", "please", "soon"]
FPS = 25.0


def synth(sentence, confusions=None, noise=0.0, seed=0, char_frames=2):
    """-> (log_probs (T, V), [(word, first_frame, last_frame)]). Each character holds
    `char_frames` frames then a blank; words are split by two separator frames; 3 blank
    frames lead and trail. `confusions` {(word_index, char_index): wrong_char} gives the
    wrong character a slightly higher probability than the right one at those frames."""
    confusions = confusions or {}
    rng = np.random.default_rng(seed)
    rows, placed = [], []

    def frame(right, wrong=None):
        p = np.full(len(VOCAB), 0.02)
        p[INDEX[right]] = 0.6
        if wrong is not None:
            p[INDEX[wrong]] = 0.8  # the right letter is a close second
        rows.append(p)

    for _ in range(3):
        frame("<blank>")
    for wi, word in enumerate(sentence.split()):
        if wi:
            frame("|"), frame("|")
        first = len(rows)
        for ci, ch in enumerate(word):
            for _ in range(char_frames):
                frame(ch, confusions.get((wi, ci)))
            last = len(rows) - 1
            frame("<blank>")
        placed.append((word, first, last))
    for _ in range(3):
        frame("<blank>")
    p = np.array(rows) * np.exp(noise * rng.standard_normal((len(rows), len(VOCAB))))
    return np.log(p / p.sum(axis=1, keepdims=True)).astype(np.float32), placed


def test_greedy_decodes_the_clean_sentence_with_its_timings():
    lp, placed = synth(SENTENCE)
    d = greedy(lp, VOCAB, fps=FPS)
    assert d.text == SENTENCE
    assert d.alignment.shape == (lp.shape[0],)
    assert d.score == pytest.approx(float(lp.max(axis=1).sum()), rel=1e-5)
    for w, (word, first, last) in zip(d.words, placed, strict=True):
        assert w["word"] == word
        assert abs(w["start_s"] - first / FPS) <= 1 / FPS + 1e-9
        assert abs(w["end_s"] - (last + 1) / FPS) <= 1 / FPS + 1e-9


def test_space_as_separator():
    vocab = [" " if v == "|" else v for v in VOCAB]
    lp, _ = synth(SENTENCE)
    assert greedy(lp, vocab, separator=" ").text == SENTENCE
    assert beam(lp, vocab, separator=" ", lexicon=GRID).text == SENTENCE


def test_lexicon_beam_recovers_words_greedy_misspells():
    # "blue" -> "blae", "two" -> "twu", "now" -> "naw": none is a grammar word.
    conf = {(1, 2): "a", (4, 2): "u", (5, 1): "a"}
    lp, placed = synth(SENTENCE, confusions=conf, noise=0.2, seed=1)
    g = greedy(lp, VOCAB, fps=FPS)
    assert g.text.split()[1] != "blue" and g.text.split()[4] != "two"
    assert any(w not in GRID for w in g.text.split())  # a misspelling, not a lucky word
    free = beam(lp, VOCAB, beam_width=20, fps=FPS)  # no lexicon: nothing to pull it back
    assert free.text != SENTENCE
    b = beam(lp, VOCAB, beam_width=20, lexicon=GRID, fps=FPS)
    assert b.text == SENTENCE
    assert b.score > float("-inf")
    for w, (word, first, last) in zip(b.words, placed, strict=True):
        assert w["word"] == word
        assert abs(w["start_s"] - first / FPS) <= 1 / FPS + 1e-9
        assert abs(w["end_s"] - (last + 1) / FPS) <= 1 / FPS + 1e-9


def test_user_word_list_replaces_the_grammar():
    lp, _ = synth("bin blue at f two now")
    # Without "two" in the list the nearest listed spelling must be chosen instead.
    words = [w for w in GRID if w != "two"] + ["tow"]
    out = beam(lp, VOCAB, lexicon=words).text.split()
    assert "two" not in out
    assert set(out) <= set(words)


def test_beam_without_lexicon_matches_greedy_on_clean_input():
    lp, _ = synth(SENTENCE)
    assert beam(lp, VOCAB).text == SENTENCE


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 5, len(VOCAB)), np.float32), "2-D array"),
    (np.zeros((5, len(VOCAB) + 1), np.float32), "vocabulary has 29 entries"),
    (np.zeros((0, len(VOCAB)), np.float32), "no frames"),
    (np.full((3, len(VOCAB)), np.nan, np.float32), "NaN"),
    (np.zeros((3, len(VOCAB)), np.int64), "floating point"),
])
def test_bad_log_probs_are_refused(bad, match):
    with pytest.raises(InputError, match=match):
        greedy(bad, VOCAB)
    with pytest.raises(InputError, match=match):
        beam(bad, VOCAB)


def test_bad_vocabulary_or_lexicon_is_refused():
    lp, _ = synth("at")
    with pytest.raises(InputError, match="separator ' ' is not in the vocabulary"):
        greedy(lp, VOCAB, separator=" ")
    with pytest.raises(InputError, match=r"'caf\u00e9' has characters '\u00e9'"):
        beam(lp, VOCAB, lexicon=["at", "café"])
    with pytest.raises(InputError, match="list of words"):
        beam(lp, VOCAB, lexicon="at")
    with pytest.raises(InputError, match="lexicon is empty"):
        beam(lp, VOCAB, lexicon=["", " "])
    with pytest.raises(InputError, match="beam_width"):
        beam(lp, VOCAB, beam_width=0)
