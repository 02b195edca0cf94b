"""Target speech extractor for hearables: hear only the enrolled voice, 8 ms at a time.

After Look Once to Hear (Veluri et al., CHI 2024), sized for two training cores: a
causal conv-STFT front-end (12 ms frames, 8 ms hop), a stack of causal dilated
depthwise-conv blocks over frames, each modulated (FiLM) by a speaker embedding,
and bounded complex filter taps over the current and past frames (deep filtering;
`Dims.df_order`, 1 = a plain complex mask). The embedding comes once per enrollment
from `SpeakerEncoder` (models/speaker_encoder.py).

Training (models/speech_extractor/train.py, `avedge train speech-extractor`): corpus
mixtures of neural (Kokoro) and espeak-ng voices, half the targets each, augmented;
piper's voice is held out as the unseen-synthesizer test. The shipped weights and
their record (steps, time, scores) are models/speech_extractor/weights/speech_extractor_df.{safetensors,
json}; the plain-mask model they grew from (and the NPU form is fitted from) is
models/speech_extractor/weights/speech_extractor.{safetensors,json}.

One graph serves streaming and whole-utterance use: `forward` takes any multiple of
CHUNK samples plus explicit state, so feeding chunks one by one equals feeding the
whole clip (tests/models/test_speech_extractor.py). Output lags input by LOOKAHEAD.

    chunk (B, 128k), speaker (B, E), stft_state (B, 64), ola_state (B, 64),
    conv_state (B, S, D)  ->  out (B, 128k), stft_state', ola_state', conv_state'

    >>> import torch
    >>> from avedge.models.speech_extractor import model as se
    >>> model = se.build(se.Dims(d_model=16, d_hidden=32, n_blocks=2))
    >>> emb = model.speaker_encoder(torch.randn(1, se.ENROLL_SAMPLES))
    >>> y = se.extract(model, torch.randn(1, 1000), emb)
    >>> tuple(y.shape)
    (1, 1000)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from avedge.models.common.conv_stft import HOP, LOOKAHEAD, N_BINS, ConvSTFT
from avedge.models.common.metrics import si_sdr
from avedge.models.speech_extractor.speaker_encoder import (
    ENROLL_SAMPLES,
    MIN_ENROLL_SAMPLES,
    SpeakerDims,
    SpeakerEncoder,
    fit_enrollment,
    split_condition,
)
from avedge.runtime.audio_io import SAMPLE_RATE
from torch import nn

NAME = "speech-extractor"
CHUNK = HOP  # 128 samples = 8 ms at 16 kHz
LOG_EPS = 1e-6
FEATURE_SCALE = 0.1  # log-power features ~ [-14, 8] -> ~[-1.4, 0.8]
# The shipped float model (cpu, hearable, GPU): deep filtering over 4 frames, grown from
# the plain-mask model below and trained on (record: speech_extractor_df.json).
WEIGHTS_FILE = Path(__file__).parent / "weights" / "speech_extractor_df.safetensors"
# The plain-mask model (df_order 1) that one was grown from: the NPU form is fitted
# from it (`avedge train speech-extractor-npu`'s default --init).
MASK_WEIGHTS_FILE = Path(__file__).parent / "weights" / "speech_extractor.safetensors"
# The same model fitted to the hearable NPU: MLPs pruned, fine-tuned quantization-aware
# (models/speech_extractor/train_npu.py). NPU targets export it when it exists.
NPU_WEIGHTS_FILE = Path(__file__).parent / "weights" / "speech_extractor_npu.safetensors"
# 3 mixtures (3 s, 0 dB SIR, 5 dB SNR) + enrollments from the corpus *val* split, int16:
# the activations static int8 calibrates on (see Extractor.calibration_inputs).
CALIB_FILE = Path(__file__).parent / "weights" / "speech_extractor_calib.npz"
CALIB_EVERY = 12  # keep every 12th chunk of the calibration streams (~93 batches)

__all__ = [
    "CHUNK",
    "ENROLL_SAMPLES",
    "LOOKAHEAD",
    "MASK_WEIGHTS_FILE",
    "MIN_ENROLL_SAMPLES",
    "NAME",
    "SAMPLE_RATE",
    "Dims",
    "Extractor",
    "build",
    "components",
    "example_inputs",
    "export_extra",
    "extract",
    "fit_enrollment",
    "load_weights",
    "macs_per_chunk",
    "metric",
    "npu_components",
    "save_weights",
    "si_sdr",
]


@dataclass
class Dims:
    d_model: int = 128
    d_hidden: int = 256
    n_blocks: int = 12
    dilation_cycle: int = 6  # dilations 1, 2, 4, ..., 2**(cycle-1), repeated
    kernel: int = 3
    # Complex filter taps over frames (deep filtering, after DeepFilterNet): output frame
    # t = sum_k mask_k(t) * X(t-k). 1 = a plain complex mask. A 12 ms frame has 83 Hz
    # bins, too coarse to mask two talkers' harmonics apart (the ideal magnitude mask
    # scores 11.2 dB SI-SDRi on the issue #4 set, benchmarks/bench_mask_oracle.py); taps
    # over past frames filter with the resolution of a longer window at the same 12 ms
    # latency. With > 1 the features also carry each bin's phase advance since the last
    # frame (where in the bin the harmonic sits).
    df_order: int = 4
    # With an enrollment memory (speaker.memory_tokens > 0): an attention from the frames
    # to the memory before every `memory_every`-th block (blocks 0, N, 2N, ...).
    memory_every: int = 4
    memory_heads: int = 4
    speaker: SpeakerDims = field(default_factory=SpeakerDims)

    def __post_init__(self):
        if self.df_order < 1:
            from avedge.runtime.errors import AvedgeError

            raise AvedgeError(f"df_order must be >= 1 (1: a plain complex mask, N: taps "
                              f"over N frames); got {self.df_order}")
        if self.speaker.memory_tokens < 0 or self.memory_every < 1 or (
                self.speaker.memory_tokens and self.speaker.memory_dim % self.memory_heads):
            from avedge.runtime.errors import AvedgeError

            raise AvedgeError(f"enrollment memory: memory_tokens >= 0, memory_every >= 1 and "
                              f"memory_dim a multiple of memory_heads; got "
                              f"{self.speaker.memory_tokens}, {self.memory_every}, "
                              f"{self.speaker.memory_dim}, {self.memory_heads}")

    @property
    def memory_blocks(self) -> list[int]:
        """Blocks preceded by an attention to the enrollment memory."""
        if not self.speaker.memory_tokens:
            return []
        return list(range(0, self.n_blocks, self.memory_every))

    @property
    def dilations(self) -> list[int]:
        return [2 ** (i % self.dilation_cycle) for i in range(self.n_blocks)]

    @property
    def state_frames(self) -> int:
        return sum((self.kernel - 1) * d for d in self.dilations)

    @property
    def n_features(self) -> int:
        return N_BINS * (3 if self.df_order > 1 else 1)  # log power (+ phase advance re, im)

    @property
    def receptive_field_ms(self) -> float:
        return (self.state_frames + 1) * CHUNK / SAMPLE_RATE * 1000

    @classmethod
    def from_json(cls, d: dict) -> Dims:
        d = dict(d)
        d["speaker"] = SpeakerDims(**d.get("speaker", {}))
        d.setdefault("df_order", 1)  # written before deep filtering: a plain mask
        return cls(**d)


class CausalBlock(nn.Module):
    """Causal dilated depthwise conv over frames -> LayerNorm -> FiLM -> MLP, residual."""

    def __init__(self, d_model: int, d_hidden: int, kernel: int, dilation: int):
        super().__init__()
        self.kernel, self.dilation = kernel, dilation
        self.context = (kernel - 1) * dilation  # frames of state
        self.dw = nn.Parameter(torch.randn(kernel, d_model) / kernel)
        self.norm = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, d_hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(d_hidden, d_model)

    def forward(self, x, state, gamma, beta):
        # x (B, T, D); state (B, context, D); gamma, beta (B, 1, D)
        t = x.shape[1]
        buf = torch.cat([state, x], dim=1)  # (B, context + T, D)
        h = buf[:, 0:t] * self.dw[0]
        for j in range(1, self.kernel):
            o = j * self.dilation
            h = h + buf[:, o: o + t] * self.dw[j]  # (B, T, D)
        h = self.norm(h) * gamma + beta
        h = self.fc2(self.act(self.fc1(h)))  # (B, T, D)
        return x + h, buf[:, buf.shape[1] - self.context:]


class MemoryAttention(nn.Module):
    """The frames attend to the enrollment memory (keys/values from the speaker encoder):
    x + Wo(softmax(q k^T / sqrt(h)) v), multi-head, residual. Wo starts at zero, so adding
    it to trained weights leaves their function unchanged (a warm start, see grow())."""

    def __init__(self, d_model: int, memory_dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, memory_dim // heads
        self.norm = nn.LayerNorm(d_model)
        self.query = nn.Linear(d_model, memory_dim)
        self.out = nn.Linear(memory_dim, d_model)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, keys, values):
        # x (B, T, D); keys, values (B, K, M)
        b, t, _ = x.shape
        k_tokens = keys.shape[1]
        q = self.query(self.norm(x)).reshape(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = keys.reshape(b, k_tokens, self.heads, self.head_dim).transpose(1, 2)  # (B,H,K,h)
        v = values.reshape(b, k_tokens, self.heads, self.head_dim).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(2, 3) * self.head_dim ** -0.5, dim=-1)  # (B,H,T,K)
        o = (a @ v).transpose(1, 2).reshape(b, t, self.heads * self.head_dim)  # (B, T, M)
        return x + self.out(o)


class Extractor(nn.Module):
    """The streaming graph. `speaker_encoder` rides along but is not part of `forward`."""

    input_names = ("chunk", "speaker", "stft_state", "ola_state", "conv_state")
    output_names = ("out", "stft_state_out", "ola_state_out", "conv_state_out")
    chunk_samples = CHUNK
    lookahead_samples = LOOKAHEAD
    sample_rate = SAMPLE_RATE
    family = NAME

    def __init__(self, dims: Dims | None = None):
        super().__init__()
        self.dims = d = dims or Dims()
        self.stft = ConvSTFT()
        self.in_proj = nn.Linear(d.n_features, d.d_model)
        self.film = nn.Linear(d.speaker.emb_dim, d.n_blocks * 2 * d.d_model)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.blocks = nn.ModuleList(
            CausalBlock(d.d_model, d.d_hidden, d.kernel, dil) for dil in d.dilations)
        self.memory = nn.ModuleDict({
            str(i): MemoryAttention(d.d_model, d.speaker.memory_dim, d.memory_heads)
            for i in d.memory_blocks})
        self.out_norm = nn.LayerNorm(d.d_model)
        self.out_proj = nn.Linear(d.d_model, 2 * N_BINS * d.df_order)  # [re, im] per tap
        self._contexts = [b.context for b in self.blocks]
        # Not a submodule: the exported extractor graph must not carry the encoder weights.
        object.__setattr__(self, "speaker_encoder", SpeakerEncoder(d.speaker))

    def init_state(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        stft_state, ola_state = self.stft.init_state(batch, self.dims.df_order - 1)
        conv_state = torch.zeros(batch, self.dims.state_frames, self.dims.d_model)
        return stft_state, ola_state, conv_state

    @torch.no_grad()
    def calibration_pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(enrollment (1, ENROLL_SAMPLES), mixture (1, L)) pairs that static int8
        calibrates on: corpus val-split mixtures, or tones in noise without the data file."""
        import numpy as np

        if CALIB_FILE.exists():
            with np.load(CALIB_FILE) as z:
                mixes = z["mixture"].astype(np.float32) / 32767
                enrolls = [e[:n].astype(np.float32) / 32767
                           for e, n in zip(z["enrollment"], z["enrollment_len"])]
        else:  # installed without the data file: harmonic tones in noise, at speech levels
            rng = np.random.default_rng(0)
            t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE

            def tone(f0):
                return sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 12))
            mixes = [0.05 * (tone(f) + tone(f * 1.37)) + 0.01 * rng.standard_normal(len(t))
                     for f in (110.0, 190.0, 260.0)]
            enrolls = [0.05 * tone(f) for f in (110.0, 190.0, 260.0)]
        return [(fit_enrollment(torch.from_numpy(np.ascontiguousarray(e, np.float32)))[None],
                 torch.from_numpy(np.ascontiguousarray(m, np.float32))[None])
                for m, e in zip(mixes, enrolls)]

    def calibration_provenance(self) -> dict:
        """Where calibration_pairs() come from (recorded in the manifest by static int8):
        CALIB_FILE's val-split mixtures (its seed differs from the eval sets' seed,
        evaluate.SEED), or synthetic tones without the file."""
        import numpy as np

        if not CALIB_FILE.exists():
            return {"data": "synthetic harmonic tones in noise (no calibration file)"}
        with np.load(CALIB_FILE) as z:
            return {"data": "voice-bank mixtures", "file": CALIB_FILE.name, "split": "val",
                    "seed": int(z["seed"]), "mixtures": len(z["mixture"]),
                    "every_nth_chunk": CALIB_EVERY,
                    "not_eval_set": "drawn with another seed than the val eval set"}

    @torch.no_grad()
    def calibration_inputs(self) -> list[tuple[torch.Tensor, ...]]:
        """(chunk, speaker, *state) batches from real streams, for static int8 scales:
        speech mixtures chunk by chunk, with the state they produce along the way."""
        batches = []
        for enroll, x in self.calibration_pairs():
            emb = self.speaker_encoder(enroll)
            state = self.init_state(1)
            for k in range(x.shape[1] // CHUNK):
                chunk = x[:, k * CHUNK:(k + 1) * CHUNK]
                if k % CALIB_EVERY == 0:
                    batches.append((chunk, emb, *state))
                state = tuple(self(chunk, emb, *state)[1:])
        return batches

    def forward(self, chunk, speaker, stft_state, ola_state, conv_state):
        # chunk (B, 128k); speaker (B, E)
        d, p = self.dims.d_model, self.dims.df_order - 1
        spec_all, stft_state = self.stft.analyze(chunk, stft_state)  # (B, 2F, P + T)
        t = spec_all.shape[2] - p
        spec = spec_all[:, :, p:]  # this call's frames (B, 2F, T)
        re, im = spec[:, :N_BINS], spec[:, N_BINS:]  # (B, F, T)
        feats = torch.log(re * re + im * im + LOG_EPS) * FEATURE_SCALE  # (B, F, T)
        if p:
            feats = torch.cat([feats, phase_advance(spec, spec_all[:, :, p - 1: p - 1 + t])], 1)
        x = self.in_proj(feats.transpose(1, 2))  # (B, T, D)
        emb, keys, values = split_condition(speaker, self.dims.speaker)
        film = self.film(emb[:, None, :])  # (B, 1, N*2*D): [gamma_0, beta_0, gamma_1, ...]
        states = torch.split(conv_state, self._contexts, dim=1)
        new_states = []
        for i, blk in enumerate(self.blocks):
            gamma = 1.0 + film[:, :, 2 * i * d:(2 * i + 1) * d]  # (B, 1, D)
            beta = film[:, :, (2 * i + 1) * d:(2 * i + 2) * d]
            if str(i) in self.memory:
                x = self.memory[str(i)](x, keys, values)
            x, s = blk(x, states[i], gamma, beta)
            new_states.append(s)
        m = torch.tanh(self.out_proj(self.out_norm(x))).transpose(1, 2)  # (B, 2F*K, T)
        y_spec = complex_mul(m[:, : 2 * N_BINS], spec)  # tap 0: the current frame
        for k in range(1, p + 1):
            y_spec = y_spec + complex_mul(m[:, 2 * N_BINS * k: 2 * N_BINS * (k + 1)],
                                          spec_all[:, :, p - k: p - k + t])
        out, ola_state = self.stft.synthesize(y_spec, ola_state)  # (B, 128k)
        return out, stft_state, ola_state, torch.cat(new_states, dim=1)


def complex_mul(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B, 2F, T) x (B, 2F, T) -> (B, 2F, T), both [real bins; imag bins]."""
    mr, mi, xr, xi = m[:, :N_BINS], m[:, N_BINS:], x[:, :N_BINS], x[:, N_BINS:]
    return torch.cat([mr * xr - mi * xi, mr * xi + mi * xr], dim=1)


def phase_advance(cur: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """X(t) * conj(X(t-1)) per bin, compressed to magnitude |.|^0.15 (~[0, 3]): its angle
    is the phase a bin's component advanced over one hop, i.e. where in the 83 Hz bin it
    lies. (B, 2F, T) x2 -> (B, 2F, T)."""
    cr, ci, pr, pi = cur[:, :N_BINS], cur[:, N_BINS:], prev[:, :N_BINS], prev[:, N_BINS:]
    qr, qi = cr * pr + ci * pi, ci * pr - cr * pi
    g = torch.pow(qr * qr + qi * qi + LOG_EPS, -0.425)
    return torch.cat([qr * g, qi * g], dim=1)


def grow(model: Extractor, smaller: dict[str, torch.Tensor]) -> Extractor:
    """Load a state dict of the same model with a smaller `df_order`, or without the
    enrollment memory, into `model`: the extra feature columns and filter taps start at
    zero, and so do the memory attentions' outputs, so `model` computes exactly what the
    smaller one did (a warm start). Any other parameter must be given."""
    own = model.state_dict()
    missing = [k for k in own if k not in smaller and not k.startswith("memory.")]
    if missing:
        raise ValueError(f"the weights lack {', '.join(missing[:4])}")
    for k, v in smaller.items():
        if k not in own:
            raise ValueError(f"{k!r} is not a parameter of this extractor")
        w = own[k]
        if w.shape == v.shape:
            w.copy_(v)
        elif k in ("in_proj.weight", "out_proj.weight", "out_proj.bias") and all(
                a <= b for a, b in zip(v.shape, w.shape)) and v.dim() == w.dim():
            w.zero_()
            w[tuple(slice(0, n) for n in v.shape)] = v
        else:
            raise ValueError(f"{k!r}: shape {tuple(v.shape)} cannot grow to {tuple(w.shape)}")
    return model


# ----------------------------------------------------------------------------- family API

def build(dims: Dims | None = None, weights: str | None = None) -> Extractor:
    """The extractor (with `.speaker_encoder`); `weights` = a safetensors file from training.

    With neither argument, loads the shipped weights when they exist.
    """
    if weights is None and dims is None and WEIGHTS_FILE.exists():
        weights = str(WEIGHTS_FILE)
    if weights is not None:
        return load_weights(weights, dims)
    model = Extractor(dims)
    model.eval()
    model.speaker_encoder.eval()
    return model


def example_inputs(module: Extractor | None = None) -> tuple[torch.Tensor, ...]:
    module = module or Extractor()
    chunk = torch.randn(1, CHUNK) * 0.1
    with torch.no_grad():  # a real condition: embedding and memory as the encoder packs them
        speaker = module.speaker_encoder.eval()(torch.randn(1, ENROLL_SAMPLES) * 0.1)
    return (chunk, speaker, *module.init_state(1))


def components(module: Extractor) -> dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    """The two graphs of an artifact: for `avedge.targets.export_pipeline`."""
    enc = module.speaker_encoder.eval()
    return {
        "speaker_encoder": (enc, (torch.randn(1, ENROLL_SAMPLES) * 0.1,)),
        "extractor": (module.eval(), example_inputs(module)),
    }


def npu_components(module: Extractor) -> dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    """The graphs for an NPU target: FiLM hoisted into the run-once encoder side and the
    dilated history as ring-buffer taps (models/speech_extractor/npu.py; same function)."""
    from avedge.models.speech_extractor.npu import components as npu_form

    # Weights fine-tuned for the NPU name the log form they were tuned with.
    return npu_form(module, getattr(module, "npu_log_ranges", 1))


def export_extra() -> dict:
    """Recorded in a composite artifact's manifest."""
    return {"algorithmic_latency_ms": (CHUNK + LOOKAHEAD) / SAMPLE_RATE * 1000}


def extract(model: Extractor, mixture: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
    """Whole-utterance extraction, aligned with the input: (B, L), (B, E) -> (B, L)."""
    b, length = mixture.shape
    n = -(-(length + LOOKAHEAD) // CHUNK) * CHUNK
    padded = nn.functional.pad(mixture, (0, n - length))
    out = model(padded, speaker, *model.init_state(b))[0]
    return out[:, LOOKAHEAD: LOOKAHEAD + length]


def metric(est, ref, mixture) -> dict[str, float]:
    """SI-SDR of the estimate and its improvement over the mixture (dB), batch means."""
    est, ref, mixture = (torch.as_tensor(a, dtype=torch.float32) for a in (est, ref, mixture))
    s = si_sdr(est, ref)
    return {"si_sdr_db": float(s.mean()), "si_sdri_db": float((s - si_sdr(mixture, ref)).mean())}


def macs_per_chunk(dims: Dims | None = None) -> dict[str, int]:
    """Multiply-accumulates of one 8 ms chunk through the extractor (FiLM included, as
    the exported graph recomputes it per chunk), and of one enrollment through the encoder."""
    d = dims or Dims()
    f2, win = 2 * N_BINS, CHUNK + LOOKAHEAD
    stft = (d.df_order + 1) * f2 * win  # analysis conv (past frames again) + synthesis
    blocks = d.n_blocks * (d.kernel * d.d_model + 2 * d.d_model * d.d_hidden)
    film = d.speaker.emb_dim * d.n_blocks * 2 * d.d_model
    io = (d.n_features * d.d_model + d.d_model * f2 * d.df_order  # in/out projections
          + 4 * N_BINS * d.df_order + (8 * N_BINS if d.df_order > 1 else 0))  # mask, phase
    sd = d.speaker
    # per attention to the memory: query and output projections, scores and mix over K
    memory = len(d.memory_blocks) * (2 * d.d_model * sd.memory_dim
                                     + 2 * sd.memory_tokens * sd.memory_dim)
    frames = ENROLL_SAMPLES // CHUNK
    enc = frames * (f2 * win + sd.kernel * (N_BINS * sd.channels + (sd.layers - 1)
                                            * sd.channels * sd.channels)) + 2 * sd.channels * sd.emb_dim
    # memory pooling: K queries over the frames, then keys and values of the K tokens
    enc += 2 * frames * sd.memory_tokens * sd.channels + 2 * sd.memory_tokens * sd.channels * sd.memory_dim
    return {"extractor": stft + blocks + film + io + memory,
            "speaker_encoder_per_enrollment": enc}


def save_weights(model: Extractor, path: str | Path, meta: dict | None = None) -> None:
    """Extractor + speaker encoder in one safetensors file (dims in its metadata), atomically."""
    from avedge.models.common.weights_file import write_weights

    tensors = {f"extractor.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"speaker_encoder.{k}": v
                    for k, v in model.speaker_encoder.state_dict().items()})
    write_weights(tensors, path, NAME, asdict(model.dims), meta)


def load_weights(path: str | Path, dims: Dims | None = None) -> Extractor:
    from avedge.models.common.weights_file import read_weights
    from avedge.runtime.errors import AvedgeError

    tensors, meta = read_weights(path, NAME, unnamed_ok=True)
    if dims is None:
        dims = Dims.from_json(json.loads(meta.get("dims", "{}")))
    model = Extractor(dims)
    ext = {k[len("extractor."):]: v for k, v in tensors.items() if k.startswith("extractor.")}
    enc = {k[len("speaker_encoder."):]: v for k, v in tensors.items()
           if k.startswith("speaker_encoder.")}
    try:
        model.load_state_dict(ext)
        model.speaker_encoder.load_state_dict(enc)
    except RuntimeError as exc:
        raise AvedgeError(f"weights {str(path)!r} do not match dims {asdict(dims)}: {exc}") from exc
    # The NPU form these weights were fine-tuned in (training_extractor_npu), if any.
    model.npu_log_ranges = int(meta.get("npu_log_ranges", 1))
    model.eval()
    model.speaker_encoder.eval()
    return model
