"""espeak-ng through ctypes: audio plus phoneme and word events with their times.

libespeak-ng is a process-wide singleton, so one `EspeakEngine` is shared and every
call sets voice and parameters before synthesizing. We use synchronous mode with a
callback: the callback receives audio blocks and the event list (phoneme events carry
IPA because of espeakINITIALIZE_PHONEME_IPA; audio_position is in ms).

Formant synthesis sounds robotic: it is here for variety and exact timings, not as the
main training voice (see DESIGN.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

import numpy as np
from avedge.models.corpus.phonemes import Phone, Utterance, Word, clean_phone
from avedge.runtime.errors import AvedgeError

SAMPLE_RATE = 22050  # espeak-ng's fixed output rate
AUDIO_OUTPUT_SYNCHRONOUS = 2
INIT_PHONEME_EVENTS = 0x0001
INIT_PHONEME_IPA = 0x0002
POS_CHARACTER = 1
CHARS_UTF8 = 1
EV_LIST_TERMINATED, EV_WORD, EV_SENTENCE, EV_END, EV_MSG_TERMINATED, EV_PHONEME = 0, 1, 2, 5, 6, 7
P_RATE, P_VOLUME, P_PITCH, P_RANGE = 1, 2, 3, 4  # espeak_PARAMETER

# Accents (base voices) and variants (!v files) that give distinct-sounding talkers.
ACCENTS = ["en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-029",
           "en-gb-x-gbcwmd"]
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt",
            "klatt2", "klatt3", "andy", "annie", "belinda", "benjamin", "david", "edward",
            "john", "linda", "max", "michel", "paul", "robert", "steph", "travis", "victor"]


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


class EspeakEngine:
    """One per process (the library keeps global state); calls are serialized by a lock."""

    _instance: EspeakEngine | None = None
    _lock = threading.Lock()

    def __init__(self):
        path = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(path)
        except OSError as exc:
            raise AvedgeError(f"espeak-ng library not found ({exc}); apt-get install "
                              "libespeak-ng1 espeak-ng") from exc
        rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 200, None,
                                          INIT_PHONEME_EVENTS | INIT_PHONEME_IPA)
        if rate != SAMPLE_RATE:
            raise AvedgeError(f"espeak-ng initialised at {rate} Hz, expected {SAMPLE_RATE}")
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                          ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                          ctypes.c_void_p, ctypes.c_void_p]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._cb = _CALLBACK(self._on_audio)  # keep a reference: ctypes must not free it
        self.lib.espeak_SetSynthCallback(self._cb)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, str]] = []

    @classmethod
    def get(cls) -> EspeakEngine:
        with cls._lock:
            if cls._instance is None:
                cls._instance = EspeakEngine()
            return cls._instance

    def _on_audio(self, wav, n, events):
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != EV_LIST_TERMINATED:
            e = events[i]
            s = bytes(e.id.string).split(b"\0")[0].decode("utf-8", "replace") \
                if e.type == EV_PHONEME else ""
            self._events.append((e.type, e.audio_position, e.text_position, e.length, s))
            i += 1
        return 0

    def synth(self, text: str, voice: str, rate: int = 160, pitch: int = 50, range_: int = 50):
        """-> (audio int16 (T,), events [(type, ms, text_pos, length, phoneme)])."""
        with self._lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise AvedgeError(f"espeak-ng has no voice {voice!r}; try en-us, en-gb, en-us+m3")
            for p, v in ((P_RATE, rate), (P_PITCH, pitch), (P_RANGE, range_), (P_VOLUME, 100)):
                self.lib.espeak_SetParameter(p, int(v), 0)
            self._chunks, self._events = [], []
            data = text.encode("utf-8")
            self.lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            return audio, list(self._events)

    def phonemize(self, text: str, voice: str = "en-us") -> list[list[str]]:
        """IPA phones grouped per word (from the same events, so it agrees with synth)."""
        _, events = self.synth(text, voice)
        return _group_words(text, events)[0]


def _group_words(text: str, events):
    """Split phoneme events into words using the word events' text positions."""
    words_pos = [(pos, length) for t, _, pos, length, _ in events if t == EV_WORD]
    groups: list[list[tuple[str, int]]] = []
    word_names = []
    for t, ms, pos, length, s in events:
        if t == EV_WORD:
            groups.append([])
            word_names.append(text[pos - 1: pos - 1 + length])
        elif t == EV_PHONEME and groups:
            ph = clean_phone(s)
            if ph:
                groups[-1].append((ph, ms))
    del words_pos
    return [[p for p, _ in g] for g in groups], groups, word_names


def _forked(fn, *args):
    """Run fn(*args) in a fresh child process and return its result.

    libespeak-ng keeps state between calls (pitch flutter counters, wave generator
    phase, libc rand()), so the same call gives slightly different samples each time
    in one process, yet identical samples as the first synthesis of a fresh process.
    Every call therefore synthesizes in a fresh fork, and the bank is byte-reproducible.
    The forks come from a clean helper process (fork_server.py: forking this process
    could deadlock once it has other threads). ~35 ms a call.
    """
    from avedge.models.corpus.fork_server import ForkedCallFailed, run_forked

    try:
        return run_forked(fn, *args)
    except ForkedCallFailed:
        raise AvedgeError(f"espeak-ng synthesis failed for {args[:2]!r}") from None


def synthesize(text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50,
               range_: int = 50) -> Utterance:
    """Text -> Utterance with phone and word times (seconds) from espeak-ng events.
    Deterministic: each call synthesizes in a fresh fork (see _forked)."""
    return _forked(_synthesize, text, voice, rate, pitch, range_)


def _synthesize(text: str, voice: str, rate: int, pitch: int, range_: int) -> Utterance:
    eng = EspeakEngine.get()
    audio, events = eng.synth(text, voice, rate, pitch, range_)
    end_ms = 1000.0 * len(audio) / SAMPLE_RATE
    # Phone i ends where the next phoneme event (any word) starts.
    flat = [(clean_phone(s), ms) for t, ms, _, _, s in events if t == EV_PHONEME]
    starts = [ms for _, ms in flat] + [end_ms]
    phones = [Phone(p, starts[i] / 1000, starts[i + 1] / 1000)
              for i, (p, _) in enumerate(flat) if p]
    _, groups, names = _group_words(text, events)
    words, k = [], 0
    for name, g in zip(names, groups):
        if g:
            i0 = next(i for i, ph in enumerate(phones) if ph.start * 1000 >= g[0][1] - 1e-6)
            i1 = i0 + len(g) - 1
            words.append(Word(name.strip(" ,.?!"), phones[i0].start, phones[min(i1, len(phones) - 1)].end))
            k = i1
    del k
    return Utterance(audio.astype(np.float32) / 32768.0, SAMPLE_RATE, phones, words)


def ipa_words(text: str, voice: str = "en-us") -> list[list[str]]:
    """IPA per word with stress marks kept, one list of phones per word.

    espeak_TextToPhonemes with a separator character between phonemes (bits 8-23 of
    phonememode) so multi-letter phonemes ("eɪ", "dʒ") arrive already tokenised; it
    returns one clause per call and advances the text pointer.
    """
    eng = EspeakEngine.get()
    lib = eng.lib
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
                                          ctypes.c_int]
    sep = "_"
    mode = 0x02 | (ord(sep) << 8)  # IPA, '_' between phonemes
    out: list[list[str]] = []
    with eng._lock:
        lib.espeak_SetVoiceByName(voice.encode())
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        ptr = ctypes.c_char_p(ctypes.addressof(buf))
        while ptr.value:
            res = lib.espeak_TextToPhonemes(ctypes.byref(ptr), CHARS_UTF8, mode)
            if res is None:
                break
            for w in res.decode("utf-8").split():
                phs = [p for p in w.split(sep) if p]
                if phs:
                    out.append(phs)
    return out
