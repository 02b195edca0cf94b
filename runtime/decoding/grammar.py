"""A word grammar for CTC decoding: which word sequences a sentence may be.

    >>> from avedge.runtime.decoding.grammar import Grammar
    >>> g = Grammar.from_json({"forms": [[{"phrases": ["bin", "lay"]},
    ...                                   {"phrases": ["blue", "green"]},
    ...                                   {"phrases": ["now", "please again"], "optional": True}]]})
    >>> g.accepts("bin green please again".split()), g.accepts("green bin".split())
    (True, False)

A grammar is one or more *forms*; a form is a sequence of *slots*; a slot is a list of
phrases (one or more words each), optionally skippable. The corpus grammar has two forms:
the GRID command (command colour preposition letter digit adverb) and the free sentence
(subject verb object [place] [time]). Its JSON form ships in a lip-reader artifact's
manifest (`extra.grammar`); `avedge lipread --grammar FILE` takes a user's.

Decoding with a grammar (runtime/decoding/ctc.py `constrained`) is exact: the grammar is
spelled out into a CTC graph (`CtcGraph`: a state per letter of every phrase, per
separator and per gap between labels) and the single best path through it over all the
frames is found by Viterbi, so the result is always whole sentences of the grammar (one
or more, one after another), or nothing when the clip is too short for any. A beam search
with the grammar as its language model (flashlight-text's decoders) was tried first: it
scores a word only once it is complete and keeps the cheapest incomplete readings, so on
lips alone most clips ended mid-sentence with no sentence left in the beam.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from avedge.runtime.errors import InputError

ACCEPTED = ('accepted: a JSON grammar, {"forms": [[{"phrases": ["word", "two words", ...], '
            '"optional": false}, ...], ...]}')


@dataclass(frozen=True)
class Grammar:
    forms: tuple[tuple[tuple[tuple[tuple[str, ...], ...], bool], ...], ...]
    # forms -> slots -> (phrases, optional); a phrase is a tuple of words

    # ------------------------------------------------------------------ building
    @classmethod
    def from_json(cls, data) -> Grammar:
        """{"forms": [[{"phrases": [str, ...], "optional": bool}, ...], ...]} -> Grammar;
        InputError saying what is wrong and what is accepted."""
        shape = ACCEPTED
        if not isinstance(data, dict) or not isinstance(data.get("forms"), list) \
                or not data["forms"]:
            raise InputError(f"a grammar needs a non-empty list 'forms'; {shape}")
        forms = []
        for fi, form in enumerate(data["forms"]):
            if not isinstance(form, list) or not form:
                raise InputError(f"grammar form {fi} must be a non-empty list of slots; {shape}")
            slots = []
            for si, slot in enumerate(form):
                phrases = slot.get("phrases") if isinstance(slot, dict) else None
                if not isinstance(phrases, list) or not phrases:
                    raise InputError(f"grammar form {fi} slot {si} needs a non-empty list "
                                     f"'phrases'; {shape}")
                words = []
                for p in phrases:
                    w = tuple(str(p).lower().split()) if isinstance(p, str) else ()
                    if not w:
                        raise InputError(f"grammar form {fi} slot {si}: phrase {p!r} is not "
                                         f"a non-empty string of words")
                    words.append(w)
                slots.append((tuple(dict.fromkeys(words)), bool(slot.get("optional", False))))
            if all(opt for _, opt in slots):
                raise InputError(f"grammar form {fi} has only optional slots: it would accept "
                                 f"an empty sentence")
            forms.append(tuple(slots))
        return cls(tuple(forms))

    @classmethod
    def from_file(cls, path) -> Grammar:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(f"cannot read the grammar file {str(p)!r}: {exc.strerror}; "
                             f"{ACCEPTED}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"the grammar file {str(p)!r} is not JSON ({exc}); "
                             f"{ACCEPTED}") from None
        return cls.from_json(data)

    def to_json(self) -> dict:
        return {"forms": [[{"phrases": [" ".join(p) for p in phrases], "optional": opt}
                           for phrases, opt in form] for form in self.forms]}

    def words(self) -> list[str]:
        """Every word the grammar can say, first order: the lexicon of its decoder."""
        return list(dict.fromkeys(w for form in self.forms for phrases, _ in form
                                  for p in phrases for w in p))

    def check_spelling(self, vocab: list[str], separator: str) -> None:
        """InputError naming the first word the vocabulary cannot spell (a reader is asked
        this before it decodes any video, not after)."""
        letters = set(vocab[1:]) - {separator}
        for w in self.words():
            missing = sorted(set(w) - letters)
            if missing:
                raise InputError(f"grammar word {w!r} has characters {''.join(missing)!r} "
                                 f"that are not in the vocabulary; accepted: "
                                 f"{''.join(sorted(letters))!r}")

    # ------------------------------------------------------------------ automaton
    def automaton(self) -> Automaton:
        return Automaton(self)

    def accepts(self, words: list[str]) -> bool:
        a = self.automaton()
        state = a.start
        for w in words:
            state = a.step(state, w)
            if not state:
                return False
        return a.accepting(state)


class Automaton:
    """The grammar as a word automaton with empty moves (skippable slots), stepped on sets
    of positions. Position 0 is the start; each slot has an entry and an exit position; a
    phrase of k words runs through k - 1 inner positions from its slot's entry to its exit."""

    def __init__(self, grammar: Grammar):
        self.moves: dict[int, list[tuple[str, int]]] = {0: []}
        self.empty: dict[int, list[int]] = {0: []}
        self.final: set[int] = set()
        for form in grammar.forms:
            at = self._new()
            self.empty[0].append(at)
            for phrases, optional in form:
                out = self._new()
                for phrase in phrases:
                    cur = at
                    for i, word in enumerate(phrase):
                        nxt = out if i == len(phrase) - 1 else self._new()
                        self.moves[cur].append((word, nxt))
                        cur = nxt
                if optional:
                    self.empty[at].append(out)
                at = out
            self.final.add(at)
        self.start = self.closure({0})

    def _new(self) -> int:
        n = len(self.moves)
        self.moves[n], self.empty[n] = [], []
        return n

    def closure(self, states) -> frozenset:
        todo, seen = list(states), set(states)
        while todo:
            for nxt in self.empty[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return frozenset(seen)

    def step(self, states: frozenset, word: str) -> frozenset:
        return self.closure({nxt for s in states for w, nxt in self.moves[s] if w == word})

    def accepting(self, states: frozenset) -> bool:
        return bool(states & self.final)


class CtcGraph:
    """The grammar spelled out for CTC: every path through it is one or more sentences of
    the grammar (a long clip holds several), frame by frame. States are character states
    (one per letter of every phrase's spelling, and one per separator between words: each
    emits its label, repeating it as long as it likes) and blank states (one per position
    between labels). A letter may follow the same letter only through a blank, as CTC
    collapses repeats."""

    def __init__(self, grammar: Grammar, vocab: list[str], separator: str,
                 several: bool = True):
        grammar.check_spelling(vocab, separator)
        index = {c: i for i, c in enumerate(vocab)}
        words = grammar.automaton()
        nodes: dict = {}  # ("B", p) ready for a word at grammar position p; ("E", p) a
        arcs: list[tuple[int, int, int]] = []  # word just ended at p; inner spelling nodes

        def node(key) -> int:
            return nodes.setdefault(key, len(nodes))

        todo, seen = [0], {0}  # grammar positions reachable, from the start
        while todo:
            p = todo.pop()
            start = node(("B", p))
            arcs.append((start, start, index[separator]))  # stray separators are harmless
            for q in words.closure({p}):
                for word, r in words.moves[q]:
                    cur = start
                    for k, ch in enumerate(word):
                        last = k == len(word) - 1
                        nxt = node(("E", r) if last else ("in", len(nodes)))
                        arcs.append((cur, nxt, index[ch]))
                        cur = nxt
                    if r not in seen:
                        seen.add(r)
                        todo.append(r)
        finals = {n for key, n in nodes.items() if key[0] in ("B", "E")
                  and words.accepting(words.closure({key[1]}))}
        root = nodes[("B", 0)]
        for key, n in list(nodes.items()):  # a finished word, a separator, the next word
            if key[0] == "E":
                arcs.append((n, node(("B", key[1])), index[separator]))
                if several and n in finals:  # a clip may hold several sentences in a row
                    arcs.append((n, root, index[separator]))
        n_arcs, n_nodes = len(arcs), len(nodes)
        # State s < n_arcs: the letter of arc s; state n_arcs + v: blank at node v.
        self.labels = np.array([a[2] for a in arcs] + [0] * n_nodes, np.int64)
        into: list[list[int]] = [[] for _ in range(n_nodes)]
        for a, (_, dst, _) in enumerate(arcs):
            into[dst].append(a)
        preds: list[list[int]] = []
        for a, (src, _, lab) in enumerate(arcs):  # a letter: repeated, after a blank at its
            preds.append([a, n_arcs + src] + [b for b in into[src] if arcs[b][2] != lab])
        for v in range(n_nodes):  # a blank: repeated, or after a letter arriving here
            preds.append([n_arcs + v] + into[v])
        width = max(len(p) for p in preds)
        dead = len(preds)  # an extra state that is never reachable pads the lists
        self.preds = np.array([p + [dead] * (width - len(p)) for p in preds], np.int64)
        self.starts = np.array([n_arcs + root] + [a for a, (src, _, _) in enumerate(arcs)
                                                  if src == root], np.int64)
        self.ends = np.array([a for a, (_, dst, _) in enumerate(arcs) if dst in finals]
                             + [n_arcs + v for v in finals], np.int64)

    def best_path(self, log_probs: np.ndarray) -> tuple[np.ndarray | None, float]:
        """Viterbi: the best sentence's per-frame labels (T,) and its log-prob; (None,
        -inf) when no sentence fits the frames (too few of them)."""
        lp = np.asarray(log_probs, np.float64)
        n_frames, n_states = len(lp), len(self.labels)
        score = np.full(n_states + 1, -np.inf)
        score[self.starts] = lp[0, self.labels[self.starts]]
        back = np.empty((n_frames, n_states), np.int32)
        for t in range(1, n_frames):
            cand = score[self.preds]  # (states, width)
            k = cand.argmax(axis=1)
            back[t] = self.preds[np.arange(n_states), k]
            score[:n_states] = cand[np.arange(n_states), k] + lp[t, self.labels]
        end = self.ends[score[self.ends].argmax()]
        best = float(score[end])
        if not np.isfinite(best):
            return None, float("-inf")
        states = np.empty(n_frames, np.int64)
        states[-1] = end
        for t in range(n_frames - 1, 0, -1):
            states[t - 1] = back[t, states[t]]
        return self.labels[states], best
