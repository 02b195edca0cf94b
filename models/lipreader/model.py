"""The lip reader: video, audio or both -> CTC character log-probabilities, at a token rate
chosen at run time.

    video     (B, T, 88, 88)  mouth ROI, grayscale, normalised ((x/255 - MEAN) / STD), 25 fps
    audio     (B, T * 640)    16 kHz mono float in [-1, 1], aligned with the frames
    modality  (B, 2)          [video present, audio present] as 0/1
    -> log_probs (B, 2T, V)   log-probabilities over tokenizer.VOCAB at 50 Hz
                              (OUTPUTS_PER_FRAME = 2 CTC frames per video frame)

Exported graphs take a fixed window of WINDOW frames (4 s; static shapes suit ExecuTorch's
memory planning and int8 kernels). A shorter clip is padded to the window the way
training pads it (the last frame repeated: a still mouth; silence for the audio), so the
model has learned that padding says nothing; a longer clip is read in overlapping
windows (runtime/pipelines/lipread.py). Training batches use the same padding, with no
attention mask, so training and inference see the same thing.

Why this shape (after Auto-AVSR / USR and Llama-MTSK / Omni-AVSR, sized for one CPU core):
- Visual front-end: a 3D convolution stem over 5 frames, then a light 2D CNN per frame.
  The stem has one input channel, so the 3D convolution is written as a 2D convolution
  over the 5 time-shifted frames stacked as channels (the same function and weights
  layout (C, kt, kh, kw)): XNNPACK and CPU int8 kernels have 2D convolutions, not 3D.
- Audio front-end: log-mel from fixed convolutions (a windowed DFT as conv1d, power,
  a fixed mel matrix; ExecuTorch has no rfft), 4 mel frames per video frame stacked
  into one vector: the audio arrives at the video rate.
- Fusion: each stream is multiplied by its presence flag and a learned embedding of the
  flags is added, so one set of weights serves audio-only, video-only and both
  (modality dropout in training draws the flags).
- Token rates {1, 2, 4}: the fused 25 Hz sequence is average-pooled by the rate before
  the encoder, whose cost falls with it; a learned rate embedding tells the shared
  encoder which rate it runs at. Characters need more outputs than tokens at rate 4
  (a GRID sentence is ~21 characters in ~75 frames = ~19 tokens), so each rate's head
  emits `rate` * OUTPUTS_PER_FRAME frames of logits per token: the output is at 50 Hz at
  every rate. 50 Hz, not 25: the corpus voices speak fast (a median of 0.68 CTC labels
  per video frame, blanks between repeated letters counted; 0.83 at the 90th percentile),
  and CTC learns slowly when it must emit a character nearly every frame: a first run at
  25 Hz sat at 1.0 validation WER after 700 steps.
- Encoder: conformer-lite blocks (self-attention, a depthwise convolution that carries
  relative position, a feed-forward), pre-norm.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from avedge.models.lipreader.tokenizer import VOCAB
from torch import nn
from torch.nn import functional as F

NAME = "lipreader"
WEIGHTS_DIR = Path(__file__).parent / "weights"
WEIGHTS_FILE = WEIGHTS_DIR / "lipreader.safetensors"
SAMPLE_RATE = 16000
FPS = 25
HOP_SAMPLES = SAMPLE_RATE // FPS  # 640 audio samples per video frame
ROI = 88
RATES = (1, 2, 4)
MAX_RATE = max(RATES)
WINDOW = 100  # frames per exported window (4 s at 25 fps), a multiple of MAX_RATE
OUTPUTS_PER_FRAME = 2  # CTC output frames per video frame (50 Hz)
# ROI normalisation (grayscale / 255, then this mean and std): the runtime applies it,
# the manifest records it.
ROI_MEAN = 0.42
ROI_STD = 0.22
# Log-mel: 25 ms windows every 10 ms at 16 kHz -> 4 mel frames per 40 ms video frame.
MEL_WIN = 400
MEL_HOP = 160
MEL_FRAMES_PER_VIDEO_FRAME = HOP_SAMPLES // MEL_HOP


@dataclass(frozen=True)
class Dims:
    n_mels: int = 40
    stem_channels: int = 24
    stem_frames: int = 5  # temporal extent of the 3D stem
    cnn_channels: tuple[int, ...] = (48, 96, 128)  # per-frame 2D CNN, each block stride 2
    d_model: int = 144
    heads: int = 4
    ffn: int = 288
    layers: int = 4
    conv_kernel: int = 7  # depthwise convolution in each encoder block
    dropout: float = 0.1
    # Self-attention sees only tokens within this many video frames (0: the whole
    # window). Global attention let the first trained reader emit a sentence's first
    # letter at frame 0 however late the speech began (CTC accepts any place that keeps
    # the order); a local window ties each emission to what is heard and seen near it.
    attention_window: int = 0

    @staticmethod
    def from_json(d: dict | None) -> Dims:
        from avedge.runtime.errors import AvedgeError

        d = dict(d or {})
        names = set(Dims.__dataclass_fields__)
        if unknown := set(d) - names:
            raise AvedgeError(f"unknown lip-reader dims {sorted(unknown)}; known: "
                              f"{', '.join(sorted(names))}")
        if "cnn_channels" in d:
            d["cnn_channels"] = tuple(d["cnn_channels"])
        return Dims(**d)


# ----------------------------------------------------------------------------- audio

def mel_matrix(n_mels: int, n_fft: int = MEL_WIN, sr: int = SAMPLE_RATE,
               fmin: float = 40.0, fmax: float = 7600.0) -> np.ndarray:
    """(n_mels, n_fft//2+1) triangular filters on the HTK mel scale, unit peak."""
    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


class LogMel(nn.Module):
    """(B, N) audio -> (B, N // MEL_HOP, n_mels) log-mel, centred frames, fixed weights."""

    def __init__(self, n_mels: int):
        super().__init__()
        n = torch.arange(MEL_WIN, dtype=torch.float64)
        window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / MEL_WIN)  # Hann
        f = torch.arange(MEL_WIN // 2 + 1, dtype=torch.float64)[:, None]
        ang = 2 * math.pi * f * n / MEL_WIN
        kern = torch.cat([torch.cos(ang), -torch.sin(ang)]) * window  # (2F, win)
        # Persistent (saved with the weights): ExecuTorch's verifier refuses non-persistent
        # buffers in an exported program.
        self.register_buffer("dft", kern.float()[:, None, :])
        self.register_buffer("mel", torch.from_numpy(mel_matrix(n_mels)))
        self.n_bins = MEL_WIN // 2 + 1

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        pad = (MEL_WIN - MEL_HOP) // 2  # frame k is centred on sample k * hop + hop / 2
        x = F.pad(audio[:, None, :], (pad, MEL_WIN - MEL_HOP - pad))
        spec = F.conv1d(x, self.dft, stride=MEL_HOP)  # (B, 2F, frames)
        re, im = spec[:, : self.n_bins], spec[:, self.n_bins:]
        power = re * re + im * im
        mel = torch.matmul(self.mel, power)  # (B, n_mels, frames)
        return torch.log(mel + 1e-6).transpose(1, 2)


class AudioFrontEnd(nn.Module):
    """Audio -> (B, T, d) at the video rate: 4 log-mel frames per video frame, stacked."""

    def __init__(self, dims: Dims):
        super().__init__()
        self.logmel = LogMel(dims.n_mels)
        k = MEL_FRAMES_PER_VIDEO_FRAME
        self.norm = nn.LayerNorm(dims.n_mels)
        self.conv = nn.Sequential(  # over mel frames (100 Hz), then strided to 25 Hz
            nn.Conv1d(dims.n_mels, 128, 5, padding=2), nn.GELU(),
            nn.Conv1d(128, dims.d_model, k, stride=k), nn.GELU(),
            nn.Conv1d(dims.d_model, dims.d_model, 3, padding=1),
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        mel = self.logmel(audio)  # (B, 4T, n_mels)
        # LayerNorm ignores a shift shared by a frame's mels, so removing the frame mean
        # first changes nothing mathematically; it keeps XNNPACK's LayerNorm, which takes
        # the variance as E[x^2] - E[x]^2, from cancelling to a negative number (NaN) on
        # silence, where every mel is log(1e-6) = -13.8.
        mel = self.norm(mel - mel.mean(dim=-1, keepdim=True))
        return self.conv(mel.transpose(1, 2)).transpose(1, 2)  # (B, T, d)


# ----------------------------------------------------------------------------- video

def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class VisualFrontEnd(nn.Module):
    """(B, T, 88, 88) ROI -> (B, T, d): 3D stem over 5 frames, then a 2D CNN per frame."""

    def __init__(self, dims: Dims):
        super().__init__()
        self.kt = dims.stem_frames
        # The 3D stem (C, 1, kt, 7, 7) as a 2D convolution over kt stacked frames.
        self.stem = nn.Sequential(
            nn.Conv2d(self.kt, dims.stem_channels, 7, 2, 3, bias=False),  # 88 -> 44
            nn.BatchNorm2d(dims.stem_channels), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),  # 44 -> 22
        )
        blocks, cin = [], dims.stem_channels
        for cout in dims.cnn_channels:  # depthwise-separable, stride 2: 22 -> 11 -> 6 -> 3
            blocks += [conv_bn(cin, cin, 3, 2, groups=cin), conv_bn(cin, cout, 1)]
            cin = cout
        self.cnn = nn.Sequential(*blocks)
        self.proj = nn.Linear(cin, dims.d_model)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        B, T = video.shape[0], video.shape[1]
        half = self.kt // 2
        padded = F.pad(video, (0, 0, 0, 0, half, half), mode="replicate")
        stacked = torch.stack([padded[:, i: i + T] for i in range(self.kt)], dim=2)
        x = self.stem(stacked.reshape(B * T, self.kt, ROI, ROI))
        x = self.cnn(x).mean(dim=(2, 3))  # (B*T, C)
        return self.proj(x).reshape(B, T, -1)


# ----------------------------------------------------------------------------- encoder

class SelfAttention(nn.Module):
    """Multi-head self attention with the layout quantize/ prunes and factorises:
    q_proj/k_proj/v_proj/out_proj Linears and num_heads/head_dim read by forward, so
    removing heads (prune-heads-*) only changes those numbers and the Linears' shapes."""

    # Weights written before the projections took these names load unchanged.
    _LEGACY = (("q.", "q_proj."), ("k.", "k_proj."), ("v.", "v_proj."), ("out.", "out_proj."))

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.num_heads, self.head_dim = heads, d // heads
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, d), \
            nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, T, _ = x.shape
        h, dh = self.num_heads, self.head_dim

        def split(t):
            return t.reshape(B, T, h, dh).transpose(1, 2)

        y = F.scaled_dot_product_attention(
            split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)),
            attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, h * dh))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for old, new in self._LEGACY:
            for leaf in ("weight", "bias"):
                if prefix + old + leaf in state_dict:
                    state_dict[prefix + new + leaf] = state_dict.pop(prefix + old + leaf)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class Block(nn.Module):
    """Pre-norm conformer-lite block: attention, depthwise convolution, feed-forward."""

    def __init__(self, dims: Dims):
        super().__init__()
        d = dims.d_model
        self.norm_att, self.norm_conv, self.norm_ffn = nn.LayerNorm(d), nn.LayerNorm(d), \
            nn.LayerNorm(d)
        self.att = SelfAttention(d, dims.heads, dims.dropout)
        self.dw = nn.Conv1d(d, d, dims.conv_kernel, padding=dims.conv_kernel // 2, groups=d)
        self.pw = nn.Linear(d, d)
        self.ffn = nn.Sequential(nn.Linear(d, dims.ffn), nn.GELU(), nn.Dropout(dims.dropout),
                                 nn.Linear(dims.ffn, d))
        self.drop = nn.Dropout(dims.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.drop(self.att(self.norm_att(x), mask))
        c = self.dw(self.norm_conv(x).transpose(1, 2)).transpose(1, 2)
        x = x + self.drop(self.pw(F.gelu(c)))
        return x + self.drop(self.ffn(self.norm_ffn(x)))


# ----------------------------------------------------------------------------- model

class LipReader(nn.Module):
    def __init__(self, dims: Dims | None = None):
        super().__init__()
        self.dims = dims = dims or Dims()
        d = dims.d_model
        self.vocab = VOCAB
        self.visual = VisualFrontEnd(dims)
        self.audio = AudioFrontEnd(dims)
        self.fuse = nn.Linear(2 * d, d)
        self.modality_embedding = nn.Linear(2, d)
        self.rate_embedding = nn.Embedding(len(RATES), d)
        self.blocks = nn.ModuleList(Block(dims) for _ in range(dims.layers))
        self.norm = nn.LayerNorm(d)
        # One head per rate: rate * OUTPUTS_PER_FRAME frames of logits per token.
        self.heads = nn.ModuleList(nn.Linear(d, r * OUTPUTS_PER_FRAME * len(VOCAB))
                                   for r in RATES)

    def features(self, video: torch.Tensor, audio: torch.Tensor,
                 modality: torch.Tensor, skip_absent: bool = False,
                 visual_given: bool = False) -> torch.Tensor:
        """The fused 25 Hz sequence (B, T, d), shared by every rate.

        skip_absent (training): the visual front-end runs only on the items whose video
        flag is set (its output is zeroed for the others anyway; it is ~90 % of a
        training step's compute). Not for export: the item selection depends on data.
        visual_given (training with a fixed front-end): `video` is already the front-end's
        output (B, T, d) (models/lipreader/visual_features.py)."""
        a = self.audio(audio) * modality[:, None, 1:2]
        if visual_given:
            v = video.to(a.dtype) * modality[:, None, 0:1]
        elif skip_absent:
            seen = torch.nonzero(modality[:, 0] > 0).flatten()
            v = torch.zeros_like(a)
            if len(seen):
                v = v.index_put((seen,), (self.visual(video[seen])
                                          * modality[seen, None, 0:1]).to(v.dtype))
        else:
            v = self.visual(video) * modality[:, None, 0:1]
        return self.fuse(torch.cat([v, a], dim=-1)) + self.modality_embedding(modality)[:, None]

    def decode_features(self, feats: torch.Tensor, rate: int,
                        lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, d) fused features -> (B, 2T, V) log-probabilities at token rate `rate`.

        lengths (B,) frames of each item (training batches are padded); None: all T."""
        i = RATES.index(rate)
        B, T = feats.shape[0], feats.shape[1]
        x = feats if rate == 1 else F.avg_pool1d(feats.transpose(1, 2), rate, rate).transpose(1, 2)
        x = x + self.rate_embedding.weight[i]
        mask = None
        if lengths is not None:
            tokens = torch.div(lengths + rate - 1, rate, rounding_mode="floor")
            keep = torch.arange(x.shape[1], device=x.device)[None] < tokens[:, None]
            mask = keep[:, None, None, :]  # (B, 1, 1, T'): attend only to real tokens
        if self.dims.attention_window:
            reach = -(-self.dims.attention_window // rate)  # in tokens, rounded up
            t = torch.arange(x.shape[1], device=x.device)
            band = (t[:, None] - t[None, :]).abs() <= reach  # (T', T'), a graph constant
            mask = band if mask is None else mask & band
        for block in self.blocks:
            x = block(x, mask)
        logits = self.heads[i](self.norm(x))  # (B, T/r, r*2*V)
        logits = logits.reshape(B, T * OUTPUTS_PER_FRAME, len(VOCAB))
        return F.log_softmax(logits, dim=-1)

    def forward(self, video: torch.Tensor, audio: torch.Tensor, modality: torch.Tensor,
                rate: int = 1) -> torch.Tensor:
        return self.decode_features(self.features(video, audio, modality), rate)


class AtRate(nn.Module):
    """The exported graph of one token rate: (video, audio, modality) -> log_probs."""

    input_names = ("video", "audio", "modality")
    output_names = ("log_probs",)

    def __init__(self, model: LipReader, rate: int):
        super().__init__()
        if rate not in RATES:
            from avedge.runtime.errors import AvedgeError
            raise AvedgeError(f"token rate {rate} is not one of {RATES}")
        self.model, self.rate = model, rate
        # Recorded in the graph's manifest (token_rates).
        self.token_rates = {"rate": rate, "token_hz": FPS / rate,
                            "output_hz": FPS * OUTPUTS_PER_FRAME}

    def forward(self, video, audio, modality):
        return self.model(video, audio, modality, self.rate)


class AllRates(nn.Module):
    """Every rate's graph on one set of features: (video, audio, modality) -> the rates'
    log_probs concatenated along time. Not exported: what a recipe for all the rate graphs
    is applied to once (the family's compression_view), so a data-dependent recipe (Taylor
    importance, distillation, sensitivity ranking) sees every rate's head and path. Holds
    the model as `.model`, as AtRate does: the layer names are the graphs' own."""

    input_names = AtRate.input_names
    output_names = ("log_probs_all_rates",)

    def __init__(self, model: LipReader):
        super().__init__()
        self.model = model

    def forward(self, video, audio, modality):
        feats = self.model.features(video, audio, modality)
        return torch.cat([self.model.decode_features(feats, r) for r in RATES], dim=1)


def example_inputs(model: LipReader | None = None, frames: int = WINDOW) -> tuple:
    """A (1, frames) clip, both modalities present, its audio silent after 60 % of the
    window as a padded clip's is (export's parity check then covers exact silence, which
    once gave NaN in the .pte only)."""
    g = torch.Generator().manual_seed(0)
    audio = 0.1 * torch.randn(1, frames * HOP_SAMPLES, generator=g)
    audio[:, int(0.6 * frames) * HOP_SAMPLES:] = 0.0
    return (torch.randn(1, frames, ROI, ROI, generator=g), audio, torch.ones(1, 2))


# ----------------------------------------------------------------------------- weights

def save_weights(model: LipReader, path: str | Path, meta: dict | None = None) -> None:
    """State dict + dims in the metadata, one safetensors file, written atomically."""
    from avedge.models.common.weights_file import write_weights

    write_weights(model.state_dict(), path, NAME, asdict(model.dims), meta)


def load_weights(path: str | Path, dims: Dims | None = None) -> LipReader:
    from avedge.models.common.weights_file import read_weights
    from avedge.runtime.errors import AvedgeError

    tensors, meta = read_weights(path, NAME)
    model = LipReader(dims or Dims.from_json(json.loads(meta.get("dims", "{}"))))
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise AvedgeError(f"{str(path)!r} does not fit dims {asdict(model.dims)}: {exc}") from exc
    return model.eval()


def build(dims: Dims | None = None, weights: str | None = None) -> LipReader:
    """The lip reader; with neither argument, the shipped weights when they exist."""
    if weights is None and dims is None and WEIGHTS_FILE.exists():
        weights = str(WEIGHTS_FILE)
    if weights is not None:
        return load_weights(weights, dims)
    return LipReader(dims).eval()
