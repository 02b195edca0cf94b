"""CTC decoding over a character vocabulary: greedy, beam search through flashlight-text, and
the best sentence of a grammar.

    >>> from avedge.runtime.decoding import greedy, beam                 # doctest: +SKIP
    >>> vocab = ["<blank>", "|", *"abcdefghijklmnopqrstuvwxyz'"]   # index 0 is the blank
    >>> greedy(log_probs, vocab, fps=25).text                          # doctest: +SKIP
    'bin blue at f two now'
    >>> d = beam(log_probs, vocab, lexicon=["bin", "blue", ...], fps=25)  # doctest: +SKIP
    >>> d.words[0]                                                     # doctest: +SKIP
    {'word': 'bin', 'start_s': 0.08, 'end_s': 0.28}

`log_probs` is a (T, V) array of per-frame log-probabilities (any monotone score works for
greedy; the beam adds them up, so log-probabilities are what it expects). The word separator
(`separator`, "|" by default, or " ") is a vocabulary entry; it is never printed, words are
joined by one space.

Word timings come from the CTC alignment (the per-frame labels of the chosen path): a word
starts at the first frame of its first character and ends after the last frame of its last
character. CTC emits characters as short spikes, so the times say where the evidence for a
word lies, within a frame or two of where it was spoken.

With a lexicon, flashlight-text's LexiconDecoder only emits words of the list (a trie of
their spellings); without one, its LexiconFreeDecoder searches character sequences. No
language model is used (ZeroLM): the wheel is used without kenlm. `constrained` reads
the best whole sentence of a grammar (runtime/decoding/grammar.py) exactly, by Viterbi.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from avedge.runtime.errors import BackendUnavailableError, InputError

DEFAULT_BEAM_WIDTH = 50
BEAM_THRESHOLD = 25.0  # hypotheses this far (in log-prob) below the best are pruned


@dataclass
class Decoded:
    text: str  # words joined by single spaces
    words: list[dict] = field(default_factory=list)  # {"word", "start_s", "end_s"}
    score: float = 0.0  # log-prob of the chosen path (greedy) / the decoder's score (beam)
    alignment: np.ndarray | None = None  # (T,) vocabulary index chosen at each frame


def greedy(log_probs, vocab: list[str], *, separator: str = "|", fps: float = 25.0) -> Decoded:
    """Best label per frame, repeats collapsed, blanks dropped."""
    lp = _check(log_probs, vocab, separator, fps)
    path = lp.argmax(axis=1)
    words = _words_from_path(path, vocab, separator, fps)
    score = float(lp[np.arange(len(path)), path].sum())
    return Decoded(" ".join(w["word"] for w in words), words, score, path)


def beam(log_probs, vocab: list[str], *, beam_width: int = DEFAULT_BEAM_WIDTH,
         lexicon: list[str] | None = None, separator: str = "|",
         fps: float = 25.0) -> Decoded:
    """Beam search; with `lexicon` (a word list, e.g. the corpus's or the user's) the output
    is made of those words only. When no sequence of the lexicon's words fits the frames,
    the result is empty and its `alignment` None."""
    lp = _check(log_probs, vocab, separator, fps)
    if int(beam_width) < 1:
        raise InputError(f"beam_width must be a positive integer, got {beam_width!r}")
    words_list = None if lexicon is None else _check_lexicon(lexicon, vocab, separator)
    decoder = _decoder(tuple(vocab), separator, words_list, int(beam_width))
    emissions = np.ascontiguousarray(lp, dtype=np.float32)
    results = decoder.decode(emissions.ctypes.data, emissions.shape[0], emissions.shape[1])
    if not results:  # every hypothesis pruned: nothing in the lexicon fits these frames
        return Decoded("", [], float("-inf"), None)
    best = results[0]
    path = np.asarray(list(best.tokens)[1:-1], dtype=np.int64)  # drop start/end padding
    words = _words_from_path(path, vocab, separator, fps)
    if words_list is not None:
        # The lexicon decoder's own words are the authority (a word list entry, never a
        # partial spelling); the path gives their timings, in the same order.
        chosen = [words_list[i] for i in best.words if i >= 0]
        if len(chosen) == len(words):
            for w, text in zip(words, chosen, strict=True):
                w["word"] = text
        else:  # should not happen; keep the decoder's words, timings unknown
            words = [{"word": t, "start_s": None, "end_s": None} for t in chosen]
    return Decoded(" ".join(w["word"] for w in words), words, float(best.score), path)


def constrained(log_probs, vocab: list[str], grammar, *, separator: str = "|",
                fps: float = 25.0, several: bool = True) -> Decoded:
    """The best whole sentences of `grammar` (runtime/decoding/grammar.py) for these frames,
    one or more in a row (`several=False`: exactly one), exactly (Viterbi over the
    grammar's CTC graph); empty with `alignment` None when the clip is too short for any
    sentence."""
    lp = _check(log_probs, vocab, separator, fps)
    path, score = _graph(grammar, tuple(vocab), separator, several).best_path(lp)
    if path is None:
        return Decoded("", [], float("-inf"), None)
    words = _words_from_path(path, vocab, separator, fps)
    return Decoded(" ".join(w["word"] for w in words), words, score, path)


@lru_cache(maxsize=4)
def _graph(grammar, vocab: tuple, separator: str, several: bool):
    from avedge.runtime.decoding.grammar import CtcGraph

    return CtcGraph(grammar, list(vocab), separator, several)


def _check(log_probs, vocab, separator: str, fps: float) -> np.ndarray:
    lp = np.asarray(log_probs)
    if lp.ndim != 2:
        raise InputError(f"CTC log-probs must be a 2-D array (frames, vocabulary), "
                         f"got shape {lp.shape}")
    if not np.issubdtype(lp.dtype, np.floating):
        raise InputError(f"CTC log-probs must be floating point, got dtype {lp.dtype}")
    if len(vocab) != lp.shape[1]:
        raise InputError(f"vocabulary has {len(vocab)} entries but the log-probs have "
                         f"{lp.shape[1]} columns; they must match (index 0 = blank)")
    if len(set(vocab)) != len(vocab):
        raise InputError("vocabulary entries must be unique")
    if separator not in vocab[1:]:
        raise InputError(f"word separator {separator!r} is not in the vocabulary "
                         f"(index 0 is the blank); pass separator= one of its entries")
    if lp.shape[0] == 0:
        raise InputError("CTC log-probs have no frames")
    if not np.isfinite(lp).all():
        raise InputError("CTC log-probs contain NaN or infinity")
    if not fps > 0:
        raise InputError(f"fps must be positive, got {fps!r}")
    return lp


def _check_lexicon(lexicon, vocab, separator: str) -> list[str]:
    """Unique, non-empty words spellable in the vocabulary, in their first order."""
    if isinstance(lexicon, str):
        raise InputError("lexicon must be a list of words, not one string")
    letters = set(vocab[1:]) - {separator}
    out: list[str] = []
    for raw in lexicon:
        word = str(raw).strip()
        if not word or word in out:
            continue
        missing = sorted(set(word) - letters)
        if missing:
            raise InputError(f"lexicon word {word!r} has characters {''.join(missing)!r} "
                             f"that are not in the vocabulary; accepted: "
                             f"{''.join(sorted(letters))!r}")
        out.append(word)
    if not out:
        raise InputError("lexicon is empty; give at least one word or lexicon=None")
    return out


@lru_cache(maxsize=8)
def _decoder_cached(vocab: tuple, separator: str, lexicon: tuple | None, beam_width: int):
    from flashlight.lib.text import decoder as fl  # lazy: `import avedge.runtime` stays light

    blank, sil, n = 0, vocab.index(separator), len(vocab)
    lm = fl.ZeroLM()
    if lexicon is None:
        opts = fl.LexiconFreeDecoderOptions(
            beam_size=beam_width, beam_size_token=n, beam_threshold=BEAM_THRESHOLD,
            lm_weight=0.0, sil_score=0.0, log_add=False, criterion_type=fl.CriterionType.CTC)
        # The LM (and trie) are returned too: kept alive as long as the decoder is.
        return fl.LexiconFreeDecoder(opts, lm, sil, blank, []), lm
    index = {c: i for i, c in enumerate(vocab)}
    trie = fl.Trie(n, sil)
    start = lm.start(False)
    for wi, word in enumerate(lexicon):
        _, score = lm.score(start, wi)
        # A spelling ends with the separator: a word is complete when the separator (or the
        # end of the utterance) follows it.
        trie.insert([index[c] for c in word] + [sil], wi, score)
    trie.smear(fl.SmearingMode.MAX)
    opts = fl.LexiconDecoderOptions(
        beam_size=beam_width, beam_size_token=n, beam_threshold=BEAM_THRESHOLD, lm_weight=0.0,
        word_score=0.0, unk_score=float("-inf"), sil_score=0.0, log_add=False,
        criterion_type=fl.CriterionType.CTC)
    return fl.LexiconDecoder(opts, trie, lm, sil, blank, -1, [], False), lm, trie


def _decoder(vocab: tuple, separator: str, lexicon: list[str] | None, beam_width: int):
    try:
        return _decoder_cached(vocab, separator, None if lexicon is None else tuple(lexicon),
                               beam_width)[0]
    except ImportError as exc:
        raise BackendUnavailableError(
            f"beam search needs flashlight-text ({exc}); pip install flashlight-text, "
            f"or use greedy decoding") from None


def _words_from_path(path: np.ndarray, vocab, separator: str, fps: float) -> list[dict]:
    """Per-frame labels -> words with times: runs of one label are one character (CTC
    collapse), blanks split repeats, the separator splits words."""
    words: list[dict] = []
    chars: list[str] = []
    first = last = -1
    prev = -1
    for t, k in enumerate(int(x) for x in path):
        if k == prev:
            if k != 0 and vocab[k] != separator:
                last = t  # a held character extends the word
            continue
        prev = k
        if k == 0:
            continue
        if vocab[k] == separator:
            if chars:
                words.append(_word(chars, first, last, fps))
            chars = []
            continue
        if not chars:
            first = t
        chars.append(vocab[k])
        last = t
    if chars:
        words.append(_word(chars, first, last, fps))
    return words


def _word(chars: list[str], first: int, last: int, fps: float) -> dict:
    return {"word": "".join(chars), "start_s": round(first / fps, 4),
            "end_s": round((last + 1) / fps, 4)}
