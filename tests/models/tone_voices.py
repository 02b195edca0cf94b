"""Stand-in training data for the speech extractor's trainers (no voice bank needed)."""

import numpy as np
from avedge.models.speech_extractor import model as se


class ToneVoices:
    """Stand-in data: a 'voice' is a harmonic tone with its own f0 and spectral tilt,
    gated by random syllable envelopes. Same interface as training_extractor.CorpusData."""

    F0 = (110.0, 140.0, 180.0, 230.0, 290.0, 350.0)

    def __init__(self, seconds=1.0):
        self.n = int(seconds * se.SAMPLE_RATE)

    def _voice(self, v, rng, n):
        t = np.arange(n) / se.SAMPLE_RATE
        f0 = self.F0[v] * (1 + 0.02 * np.sin(2 * np.pi * rng.uniform(1, 3) * t))
        phase = 2 * np.pi * np.cumsum(f0) / se.SAMPLE_RATE
        x = sum(np.sin(k * phase) / k ** (0.5 + 0.3 * v) for k in range(1, 8))
        env = np.repeat(rng.random(n // 1600 + 1) > 0.3, 1600)[:n].astype(np.float32)
        return (x * env / 4).astype(np.float32)

    def sample(self, phase, index):
        rng = np.random.default_rng(index)
        tv, iv = rng.choice(len(self.F0), 2, replace=False)
        target, interf = self._voice(tv, rng, self.n), self._voice(iv, rng, self.n)
        mix = target + interf + 0.01 * rng.standard_normal(self.n).astype(np.float32)
        return {"mixture": mix, "target": target, "enrollment": self._voice(tv, rng, 24000),
                "synth": "tone"}

    def eval_set(self, split, n, holdout_synth=None, seed=1234, n_interferers=1):
        exs = [self.sample(0, 10_000 + i) for i in range(n)]
        if n_interferers == 0:  # noise only: the target alone plus a little noise
            for e in exs:
                e["mixture"] = e["target"] + 0.05 * np.random.default_rng(0).standard_normal(
                    len(e["target"])).astype(np.float32)
        return exs

    def describe(self):
        return {"bank": "tone voices (test stand-in)"}
