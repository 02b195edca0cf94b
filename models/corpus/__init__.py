"""Synthetic audio-visual speech corpus: text -> speech + phoneme timings -> visemes ->
lips-pose trajectories -> rendered mouths -> mixtures.

One concern per module:
    text.py          GRID-like command grammar and free sentences
    phonemes.py      phoneme timing records shared by every synthesizer
    voice_espeak.py  espeak-ng through ctypes (audio + phoneme/word events)
    voice_piper.py   piper's English neural voice with alignments
    voice_kokoro.py  Kokoro-82M with interpolated style vectors and token durations
    voices.py        the catalogue of voices and the split assignment
    voicebank.py     build_bank / open_bank: clean utterances + timings, cached
    augment.py       speed, pitch, EQ, reverberation, level, noise
    mixtures.py      MixtureSampler and eval_mixtures (target speech extraction)
    visemes.py       phoneme -> viseme -> lips-pose (25 fps) with coarticulation
    face.py          mouth detection on a photo and face variations
    writer.py        writes a corpus to files; check.py validates one
"""

GENERATOR_VERSION = "1"
