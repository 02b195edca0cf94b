"""Stage 2 of lip-sync: a flow-matching transformer, audio -> lips-pose at 25 fps.

    audio   (B, WINDOW_FRAMES * 640)  16 kHz mono float in [-1, 1]
    x_t     (B, WINDOW_FRAMES, 12)    the flow's state at time t (noise at t=0, pose at 1),
                                      in model space y = 2 * pose - 1
    t       (B,)                      flow time in [0, 1]
    -> v    (B, WINDOW_FRAMES, 12)    velocity dy/dt

After FlashLips (a low-dimensional lips-pose target, a small flow-matching transformer,
few steps) and JAM-Flow (audio and motion streams coupled by joint attention, positions
aligned in time across streams, a local cross-stream window). Sized for one CPU thread:
a whole window, every sampler step, in a few milliseconds (sampler.py unrolls the steps).

Why this shape:
- Audio front-end runs ONCE per window (outside the sampler's loop; sampler.py): log-mel
  as fixed convolutions (the lip reader's LogMel: ExecuTorch has no rfft), 100 Hz mel
  frames -> 50 Hz audio tokens by a stride-2 convolution. A 25 Hz audio stream would
  blur the 20-40 ms onsets that set the sync; 50 Hz costs 80 tokens per 40 frames.
- Loudness is kept: the lip reader normalises every mel frame (LayerNorm), which maps
  faint noise and loud speech to the same vector; a mouth must stay shut on the first
  and open on the second, so here the frame's mean log-mel goes in as its own channel
  and the spectral shape is normalised by a fixed scale (no per-frame variance either:
  XNNPACK's E[x^2]-E[x]^2 variance once turned exact silence into NaN).
- Positions on the 25 fps clock (cpp_kernels.ops.positions), at token CENTRES: motion
  frame i is centred at i + 0.5 frames, audio token k at (k + 0.5) / 2 frames (its mel
  frames 2k and 2k+1 are centred at 20k + 5 and 20k + 15 ms: the token at 20k + 10 ms).
  Rotary phases use these positions directly (scaled RoPE: the audio stream's index is
  scaled by 1/2), so an audio token and the motion frame at the same instant have the
  same phase and attention sees only relative time.
- Joint attention (torch.ops.avedge.joint_attention): each stream attends to all of its
  own tokens and to the other stream's tokens within +-CROSS_WINDOW frames in one softmax.
  +-4 frames (160 ms) covers the coarticulation reach of the ground truth (dominance
  tau <= 70 ms, so exp(-160/70) ~ 0.1) and its 25 ms anticipation.
- Flow time enters as a sinusoidal embedding -> MLP, added to the motion tokens and, per
  block, as a shift/scale (adaLN) of the motion stream's norms: the velocity field must
  change with t (at t=0 it is the whole way to the pose, at t=1 only a correction).
- Classifier-free guidance: with `cond` = 0 the audio tokens are replaced by a learned
  null token (training drops the audio 10 % of the time); the default guidance 1.0
  never runs the unconditional pass.

Training uses the reference (pure aten, differentiable) joint attention: the custom
op has forward kernels only. Inference and export call the op; cpp_kernels' tests hold
the two equal.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from avedge.cpp_kernels import ops as kops
from avedge.cpp_kernels import reference as kref
from avedge.models.corpus.visemes import DIMS, REST
from avedge.models.lipreader.model import LogMel
from torch import nn

NAME = "lips-pose"
WEIGHTS_DIR = Path(__file__).parent / "weights"
WEIGHTS_FILE = WEIGHTS_DIR / "lips_pose.safetensors"
SAMPLE_RATE = 16000
FPS = 25
HOP_SAMPLES = SAMPLE_RATE // FPS  # 640 samples per frame
AUDIO_TOKEN_HZ = 50
POSE_DIMS = len(DIMS)  # 12
WINDOW_FRAMES = 40  # 1.6 s: the exported graph's fixed window
CROSS_WINDOW = 4.0  # frames: the joint-attention cross-stream window (+-)
REST_T = torch.from_numpy(REST.copy())
FIXED_PREFIX = "audio.logmel."  # buffers computed at construction, not trained


def to_model_space(pose: torch.Tensor) -> torch.Tensor:
    """[0, 1] pose -> [-1, 1]: zero-mean-ish, unit-range like the N(0, 1) noise."""
    return 2.0 * pose - 1.0


def to_pose(y: torch.Tensor) -> torch.Tensor:
    return ((y + 1.0) * 0.5).clamp(0.0, 1.0)


@dataclass(frozen=True)
class Dims:
    n_mels: int = 40
    d_model: int = 96
    heads: int = 4
    ffn: int = 192
    layers: int = 3
    rope_base: float = 100.0  # longest rotary period ~ 2*pi*100 frames >> the window
    dropout: float = 0.0

    @staticmethod
    def from_json(d: dict | None) -> Dims:
        from avedge.runtime.errors import AvedgeError

        d = dict(d or {})
        names = set(Dims.__dataclass_fields__)
        if unknown := set(d) - names:
            raise AvedgeError(f"unknown lips-pose dims {sorted(unknown)}; known: "
                              f"{', '.join(sorted(names))}")
        return Dims(**d)


def stream_positions(frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(pos_a (2F,), pos_m (F,)) token centres on the 25 fps clock (see the docstring)."""
    pos_m = kops.positions(frames, FPS, FPS) + 0.5
    pos_a = kops.positions(frames * AUDIO_TOKEN_HZ // FPS, AUDIO_TOKEN_HZ, FPS) + 0.25
    return pos_a, pos_m


def rope_tables(pos: torch.Tensor, dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (T, dim/2) of the rotary angles pos * base^(-2i/dim): pos in frames."""
    inv = base ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    ang = pos[:, None].float() * inv[None, :]
    return torch.cos(ang), torch.sin(ang)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, D): rotate pairs (first half, second half) by the tables' angles."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class AudioFrontEnd(nn.Module):
    """(B, N) audio -> (B, N // 320, d) audio tokens at 50 Hz."""

    def __init__(self, dims: Dims):
        super().__init__()
        self.logmel = LogMel(dims.n_mels)
        d = dims.d_model
        self.conv = nn.Sequential(
            nn.Conv1d(dims.n_mels + 1, d, 5, padding=2), nn.GELU(),
            nn.Conv1d(d, d, 2, stride=2), nn.GELU(),  # 100 -> 50 Hz
            nn.Conv1d(d, d, 3, padding=1),
        )

    def _apply(self, fn, recurse=True):
        # The log-mel stays fp32 when the model is cast to half precision (the fp16 ONNX of
        # jetson-orin): a full-scale frame's DFT power reaches ~1.6e5 > fp16's 65504 (inf,
        # then log inf), and the 1e-6 floor is below fp16's resolution near 1. The
        # learned layers after it run in the model's precision.
        super()._apply(fn, recurse)
        for name, buf in self.logmel._buffers.items():
            if buf is not None and buf.is_floating_point() and buf.dtype != torch.float32:
                self.logmel._buffers[name] = buf.float()
        return self

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        # (B, 4F, n_mels) in fp32, log(1e-6) = -13.8 on exact silence
        mel = self.logmel(audio.float())
        level = mel.mean(dim=-1, keepdim=True)
        # Fixed scales (speech spans about -14 .. 8 in log power): shape and loudness.
        feats = torch.cat([(mel - level) * 0.25, (level + 3.0) * 0.125], dim=-1)
        feats = feats.to(next(self.conv.parameters()).dtype)  # any layer type (low-rank)
        return self.conv(feats.transpose(1, 2)).transpose(1, 2)


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) flow time -> (B, dim) sinusoids (frequencies 1 .. 1000 over t in [0, 1])."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32) / half)
    ang = t[:, None].float() * 1000.0 * freqs[None, :]
    return torch.cat([torch.cos(ang), torch.sin(ang)], dim=-1)


class JointBlock(nn.Module):
    """Per-stream norms, projections and feed-forwards; one joint attention between them."""

    def __init__(self, dims: Dims):
        super().__init__()
        d = dims.d_model
        self.heads = dims.heads
        self.norm_a, self.norm_m = nn.LayerNorm(d), nn.LayerNorm(d, elementwise_affine=False)
        self.qkv_a, self.qkv_m = nn.Linear(d, 3 * d), nn.Linear(d, 3 * d)
        self.out_a, self.out_m = nn.Linear(d, d), nn.Linear(d, d)
        self.ffn_norm_a = nn.LayerNorm(d)
        self.ffn_norm_m = nn.LayerNorm(d, elementwise_affine=False)
        self.ffn_a = nn.Sequential(nn.Linear(d, dims.ffn), nn.GELU(), nn.Linear(dims.ffn, d))
        self.ffn_m = nn.Sequential(nn.Linear(d, dims.ffn), nn.GELU(), nn.Linear(dims.ffn, d))
        # adaLN of the motion stream: (shift, scale) for both norms from the time embedding
        self.ada = nn.Linear(d, 4 * d)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def _split(self, x: torch.Tensor) -> list[torch.Tensor]:
        B, T, d3 = x.shape
        d = d3 // 3
        x = x.reshape(B, T, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return [x[0], x[1], x[2]]  # each (B, H, T, D)

    def forward(self, a, m, ada, rope_a, rope_m, pos_a, pos_m, use_op: bool):
        """ada: this block's self.ada(temb), computed by the caller before any block."""
        sh1, sc1, sh2, sc2 = ada[:, None, :].chunk(4, dim=-1)
        qa, ka, va = self._split(self.qkv_a(self.norm_a(a)))
        qm, km, vm = self._split(self.qkv_m(self.norm_m(m) * (1 + sc1) + sh1))
        qa, ka = apply_rope(qa, *rope_a), apply_rope(ka, *rope_a)
        qm, km = apply_rope(qm, *rope_m), apply_rope(km, *rope_m)
        attend = torch.ops.avedge.joint_attention if use_op else kref.joint_attention
        oa, om = attend(qa, ka, va, qm, km, vm, pos_a, pos_m, CROSS_WINDOW, None)
        B, _, Ta, _ = oa.shape
        a = a + self.out_a(oa.transpose(1, 2).reshape(B, Ta, -1))
        m = m + self.out_m(om.transpose(1, 2).reshape(B, om.shape[2], -1))
        a = a + self.ffn_a(self.ffn_norm_a(a))
        m = m + self.ffn_m(self.ffn_norm_m(m) * (1 + sc2) + sh2)
        return a, m


class PoseFlow(nn.Module):
    """The velocity network v(x_t, t | audio); `encode_audio` once, `velocity` per step."""

    family = NAME

    def __init__(self, dims: Dims | None = None, frames: int = WINDOW_FRAMES):
        super().__init__()
        self.dims = dims = dims or Dims()
        self.frames = frames
        d = dims.d_model
        self.audio = AudioFrontEnd(dims)
        self.null_audio = nn.Parameter(torch.zeros(d))  # the unconditional (CFG) token
        self.inp = nn.Linear(POSE_DIMS, d)
        self.temb = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(JointBlock(dims) for _ in range(dims.layers))
        self.norm_out = nn.LayerNorm(d)
        self.head = nn.Linear(d, POSE_DIMS)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        pos_a, pos_m = stream_positions(frames)
        # Persistent (ExecuTorch's verifier refuses non-persistent buffers); fixed tables.
        self.register_buffer("pos_a", pos_a)
        self.register_buffer("pos_m", pos_m)
        hd = d // dims.heads
        for name, pos in (("a", pos_a), ("m", pos_m)):
            cos, sin = rope_tables(pos, hd, dims.rope_base)
            self.register_buffer(f"cos_{name}", cos)
            self.register_buffer(f"sin_{name}", sin)
        self.use_op = True  # train.py switches to the differentiable reference

    def encode_audio(self, audio: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) audio -> (B, 2F, d) tokens; cond (B,) 0 = unconditional (null tokens)."""
        a = self.audio(audio)
        if cond is not None:
            c = cond.to(a.dtype)[:, None, None]
            a = a * c + self.null_audio * (1 - c)
        return a

    def velocity(self, a: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """a: encoded audio (B, 2F, d); x (B, F, 12) model space; t (B,) -> v (B, F, 12)."""
        # the dtype of the pose input, not of a layer's .weight: low-rank turns Linears into
        # Sequentials (quantize/low_rank.py)
        temb = self.temb(time_embedding(t, self.dims.d_model).to(x.dtype))
        m = self.inp(x) + temb[:, None, :]
        rope_a, rope_m = (self.cos_a, self.sin_a), (self.cos_m, self.sin_m)
        # Every block's adaLN parameters first: the one time embedding then feeds linears
        # that all run before the first joint attention. Computed inside each block, one
        # dynamically quantized input shared across custom-op boundaries made XNNPACK's
        # int8 partitioner fail ("dependency cycles").
        adas = [blk.ada(temb) for blk in self.blocks]
        for blk, ada in zip(self.blocks, adas, strict=True):
            a, m = blk(a, m, ada, rope_a, rope_m, self.pos_a, self.pos_m, self.use_op)
        return self.head(self.norm_out(m))

    def forward(self, audio, x, t, cond=None):
        return self.velocity(self.encode_audio(audio, cond), x, t)


# ----------------------------------------------------------------------------- weights

def save_weights(model: PoseFlow, path: str | Path, meta: dict | None = None) -> None:
    from avedge.models.common.weights_file import write_weights

    # The log-mel's DFT and mel matrices (1.3 MB, half the file) are fixed functions of
    # the dims: not stored; load_weights rebuilds them.
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith(FIXED_PREFIX)}
    write_weights(sd, path, NAME, asdict(model.dims), {"frames": model.frames, **(meta or {})})


def load_weights(path: str | Path, dims: Dims | None = None) -> PoseFlow:
    from avedge.models.common.weights_file import read_weights
    from avedge.runtime.errors import AvedgeError

    tensors, meta = read_weights(path, NAME)
    model = PoseFlow(dims or Dims.from_json(json.loads(meta.get("dims", "{}"))),
                     int(meta.get("frames", WINDOW_FRAMES)))
    fixed = {k: v for k, v in model.state_dict().items() if k.startswith(FIXED_PREFIX)}
    try:
        model.load_state_dict({**fixed, **tensors})
    except RuntimeError as exc:
        raise AvedgeError(f"{str(path)!r} does not fit dims {asdict(model.dims)}: {exc}") from exc
    return model.eval()


def silence_rest_error(pose: np.ndarray) -> float:
    """Mean |pose - REST| (used by tests and evaluate on silent input)."""
    return float(np.abs(np.asarray(pose) - REST).mean())
