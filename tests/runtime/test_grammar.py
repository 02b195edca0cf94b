"""The word grammar (runtime/decoding/grammar.py) and CTC decoding kept to it."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from avedge.runtime.decoding import beam, constrained
from avedge.runtime.decoding.grammar import Grammar
from avedge.runtime.errors import InputError

_spec = importlib.util.spec_from_file_location(
    "ctc_helpers", Path(__file__).parent / "test_ctc_decoding.py")
ctc_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ctc_tests)  # synth(): log-probs whose words sit at known frames
VOCAB, synth = ctc_tests.VOCAB, ctc_tests.synth

COMMAND = {"forms": [[{"phrases": ["bin", "lay"]}, {"phrases": ["blue", "green"]},
                      {"phrases": ["now", "please again"], "optional": True}]]}


def test_accepts_exactly_the_sentences_of_its_forms():
    g = Grammar.from_json(COMMAND)
    for s in ("bin blue", "lay green now", "bin green please again"):
        assert g.accepts(s.split()), s
    for s in ("", "bin", "blue bin", "bin blue please", "bin blue now now", "bin blue again"):
        assert not g.accepts(s.split()), s
    assert g.words() == ["bin", "lay", "blue", "green", "now", "please", "again"]
    assert Grammar.from_json(json.loads(json.dumps(g.to_json()))) == g


def test_phrases_sharing_first_words_keep_every_reading_open():
    g = Grammar.from_json({"forms": [[{"phrases": ["the driver", "the old fisherman", "a pilot"]},
                                      {"phrases": ["found"]}],
                                     [{"phrases": ["the"]}, {"phrases": ["end"]}]]})
    for s in ("the driver found", "the old fisherman found", "a pilot found", "the end"):
        assert g.accepts(s.split()), s
    for s in ("the found", "the old driver found", "the driver end", "a pilot"):
        assert not g.accepts(s.split()), s


def test_the_corpus_grammar_accepts_the_corpus_sentences_and_only_them():
    from avedge.models.corpus import text
    from avedge.models.lipreader.lexicon import corpus_grammar, corpus_lexicon
    from avedge.models.lipreader.tokenizer import normalize

    g = Grammar.from_json(corpus_grammar())
    rng = np.random.default_rng(0)
    for kind in ("grid", "free"):
        for _ in range(200):
            s = normalize(text.sentence(rng, kind)).split()
            assert g.accepts(s), (kind, s)
            assert not g.accepts(s[1:]) and not g.accepts(s + s[-1:]), s
    assert set(g.words()) == set(corpus_lexicon())


@pytest.mark.parametrize("bad,says", [
    ([], "non-empty list 'forms'"),
    ({"forms": []}, "non-empty list 'forms'"),
    ({"forms": [[]]}, "form 0 must be a non-empty list of slots"),
    ({"forms": [[{"words": ["a"]}]]}, "form 0 slot 0 needs a non-empty list 'phrases'"),
    ({"forms": [[{"phrases": ["a", "  "]}]]}, "is not a non-empty string of words"),
    ({"forms": [[{"phrases": ["a"], "optional": True}]]}, "only optional slots"),
])
def test_malformed_grammars_say_what_is_wrong_and_what_is_accepted(bad, says):
    with pytest.raises(InputError, match=says):
        Grammar.from_json(bad)


def test_a_grammar_file_that_is_not_json_is_refused_naming_it(tmp_path):
    p = tmp_path / "g.json"
    p.write_text("bin blue now")
    with pytest.raises(InputError, match="g.json.* is not JSON"):
        Grammar.from_file(p)
    with pytest.raises(InputError, match="cannot read the grammar file"):
        Grammar.from_file(tmp_path / "missing.json")


def test_the_grammar_reads_a_sentence_where_the_word_list_reads_nonsense():
    g = Grammar.from_json(COMMAND)
    # The frames say "blue bin now": every word is in the list, the order is not a command.
    lp, _ = synth("blue bin now")
    assert beam(lp, VOCAB, lexicon=g.words()).text == "blue bin now"
    # With the grammar the frames must be read as a command: the closest one (or, when
    # several sentences may follow one another, the closest run of commands).
    d = constrained(lp, VOCAB, g, several=False)
    assert g.accepts(d.text.split()) and d.text != "blue bin now"
    runs = constrained(lp, VOCAB, g).text.split()
    assert runs != d.text.split() and runs[:2] == ["bin", "blue"]
    # Too few frames for any sentence of the grammar (the shortest is two words, 7 letters
    # and a separator): nothing fits, and the result says so.
    short = lp[:5]
    d = constrained(short, VOCAB, g)
    assert d.text == "" and d.alignment is None
    # Words in the wrong slots are read as the slots' closest words: with the command
    # first ("bin" or "green") and then "blue" or "lay", the frames of "blue bin now"
    # share letters only with "bin blue now".
    g = Grammar.from_json({"forms": [[{"phrases": ["bin", "green"]},
                                      {"phrases": ["blue", "lay"]}, {"phrases": ["now"]}]]})
    lp, _ = synth("blue bin now")
    d = constrained(lp, VOCAB, g, several=False)
    assert d.text == "bin blue now"
    assert [w["word"] for w in d.words] == ["bin", "blue", "now"]
    assert all(w["start_s"] is not None and w["end_s"] > w["start_s"] for w in d.words)


def test_the_grammar_decoder_finds_the_best_sentence_exactly():
    # Every sentence of a small grammar scored alone (a one-sentence grammar): the best of
    # them is what the whole grammar reads, on frames of random scores.
    import itertools

    slots = [["bin", "lay", "set"], ["blue", "red"], ["now", "soon", "again"]]
    g = Grammar.from_json({"forms": [[{"phrases": p} for p in slots]]})
    rng = np.random.default_rng(3)
    for trial in range(4):
        lp = rng.normal(0, 2, (40, len(VOCAB)))
        lp -= np.log(np.exp(lp).sum(axis=1, keepdims=True))
        alone = {}
        for words in itertools.product(*slots):
            one = Grammar.from_json({"forms": [[{"phrases": [w]} for w in words]]})
            alone[" ".join(words)] = constrained(lp, VOCAB, one, several=False).score
        d = constrained(lp, VOCAB, g, several=False)
        assert d.text == max(alone, key=alone.get)
        assert d.score == pytest.approx(max(alone.values()))
        assert d.score == pytest.approx(float(lp[np.arange(40), d.alignment].sum()))


def test_a_grammar_word_the_vocabulary_cannot_spell_is_refused():
    g = Grammar.from_json({"forms": [[{"phrases": ["bin", "f2"]}]]})
    lp, _ = synth("bin")
    with pytest.raises(InputError, match="grammar word 'f2' has characters '2'"):
        constrained(lp, VOCAB, g)


def test_a_clip_of_several_sentences_is_read_as_several_sentences():
    g = Grammar.from_json(COMMAND)
    lp, _ = synth("bin blue now lay green set")
    # "set" is no command word: the closest reading is two commands (the second "lay
    # green") and the frames of "set" must go to an adverb or to nothing.
    d = constrained(lp, VOCAB, g)
    words = d.text.split()
    assert words[:5] == ["bin", "blue", "now", "lay", "green"]
    lp, _ = synth("lay green please again bin blue")
    assert constrained(lp, VOCAB, g).text == "lay green please again bin blue"
