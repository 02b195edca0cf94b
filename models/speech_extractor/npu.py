"""The speech extractor in the form a batch-1 NPU runs fastest: same function, other graphs.

Vela's per-layer report of the plain extractor on an Ethos-U55 (benchmarks/RESULTS.md)
shows where an 8 ms chunk goes besides the matrix products: 30 % of the cycles copy
the dilated-convolution history (`cat([state, x])` and the state's shift, 252 frames x
128 channels moved every chunk), and a third of the weights read per chunk are the FiLM
projection of a speaker embedding that is fixed for the whole stream. So for NPU
targets the family exports two other graphs:

* `FilmCondition` — speaker encoder + FiLM projection (with each block's LayerNorm
  affine folded in), run once per enrollment: enrollment (B, 80000) -> film
  (B, blocks * 2 * d_model) = per block [scale, shift].
* `RingExtractor` — one chunk per call; the FiLM input is already projected, and each
  dilated block reads only the history frames its kernel taps (frame t - d, t - 2d)
  instead of carrying and shifting its whole window. The frames a call produces are
  written into one ring buffer per block by the caller (firmware: a pointer bump; the
  host runtime: runtime/ring_state.py), which hands back the taps of the next call. The
  manifest's stream section records which output feeds which tap at which lag.

    chunk (B, 128), film (B, 2ND), stft_state (B, 64), ola_state (B, 64),
    taps_0 .. taps_{N-1} (B, kernel-1, D)
        -> out (B, 128), stft_state', ola_state', frames_0 .. frames_{N-1} (B, 1, D)

`tests/models/test_extractor_npu.py` holds the equivalence with `Extractor` streamed
chunk by chunk, in PyTorch and through the runtime.
"""

from __future__ import annotations

import copy
import math

import torch
from avedge.models.common.conv_stft import N_BINS
from avedge.models.speech_extractor import model as se
from avedge.runtime.errors import AvedgeError
from torch import nn


class FilmCondition(nn.Module):
    """Enrollment -> the FiLM parameters of every block (the extractor's condition)."""

    input_names = ("enrollment",)
    output_names = ("film",)
    sample_rate = se.SAMPLE_RATE
    streaming = False

    def __init__(self, model: se.Extractor):
        super().__init__()
        self.encoder = copy.deepcopy(model.speaker_encoder).eval()
        self.film = copy.deepcopy(model.film).eval()
        # Each block's LayerNorm affine (w, b) folds into its FiLM: (n*w + b)*(1 + g) + beta
        # = n*scale + shift, so the chunk graph normalises without an affine of its own.
        self.register_buffer("ln_weight", torch.stack([b.norm.weight.detach() for b in model.blocks]))
        self.register_buffer("ln_bias", torch.stack([b.norm.bias.detach() for b in model.blocks]))
        object.__setattr__(self, "_source", model)

    def forward(self, enrollment):
        film = self.film(self.encoder(enrollment))  # (B, N*2*D): [gamma_0, beta_0, ...]
        n, d = self.ln_weight.shape
        film = film.reshape(-1, n, 2, d)
        gamma = 1.0 + film[:, :, 0]
        scale = self.ln_weight * gamma
        shift = self.ln_bias * gamma + film[:, :, 1]
        return torch.stack([scale, shift], dim=2).reshape(-1, n * 2 * d)  # [scale_0, shift_0, ...]

    @torch.no_grad()
    def calibration_inputs(self) -> list[tuple[torch.Tensor]]:
        """The enrollments the extractor's calibration streams were conditioned on."""
        return [(enroll,) for enroll, _ in self._source.calibration_pairs()]


# The NPU's log is an int16 table: 513 entries over its input's int16 range, linear in
# between. On speech power spectra one table is a poor log twice over: int16 codes over
# [0, max power] leave most bins at 0 or 1 code (median power is ~1e-4 of the peak), and
# the 94 % of bins that fall in the table's first segment get a straight line from the
# range's floor. `ranged_log_power` splits the log into `ranges` tables, each fed the
# power clamped to its own 64x span and scaled to [TABLE_TOP / 64, TABLE_TOP], so every
# table works from its second segment on (interpolation error <= 0.006 nats); the sum
# is the same function in float, exactly. One table stays the default: the shipped
# NPU weights were fine-tuned against it, and on them 4 tables lost more (int8 vs fp32
# -0.46 dB against -0.10 dB, 32 mixtures; 1500 QAT steps did not close it), although
# the features are ~30x closer to the log (benchmarks/RESULTS.md, session 4).
LOG_RANGE_RATIO = 64.0  # power span per table (8x in amplitude: scales stay powers of two)
TABLE_TOP = 128.0  # each table's input ceiling: <= 256 keeps the int16 TABLE's slope valid


def ranged_log_power(re, im, k: float = 1.0, ranges: int = 1):
    """sum_i log(u_i) = log(|X|^2/k + eps/k) + ranged_log_offset(k, ranges), where table i
    reads u_i = R^i * (clamp(q, T_{i+1}, T_i) + eps/k), q = |X|^2/k, T_i = TOP / R^i
    (T_0 = no ceiling, T_ranges = no floor): each regime of q is exact in one table and
    the others hold constants. Table i >= 1 clamps re and im at sqrt(TOP / R^i) and
    scales them by sqrt(R^i) before squaring, so its int16 codes resolve its own span (a
    clamped component means R^i q >= TOP, where the table's ceiling applies anyway)."""
    eps = se.LOG_EPS / k
    q = (re * re + im * im) * (1.0 / k)
    floor = TABLE_TOP / LOG_RANGE_RATIO
    total = torch.log(torch.clamp(q, min=floor) + eps) if ranges > 1 else torch.log(q + eps)
    edge = math.sqrt(TABLE_TOP)
    for i in range(1, ranges):
        gain = LOG_RANGE_RATIO ** i
        a = math.sqrt(gain / k)  # amplitude scale: (a re)^2 + (a im)^2 = R^i q
        # Clamp, then scale: the int16 grid of a product is set by its observed range,
        # so the scaled component must never be seen beyond the table's span.
        r = torch.clamp(re, -edge / a, edge / a) * a
        m = torch.clamp(im, -edge / a, edge / a) * a
        u = torch.clamp(r * r + m * m, max=TABLE_TOP)
        if i < ranges - 1:
            u = torch.clamp(u, min=floor)
        total = total + torch.log(u + gain * eps)
    return total


def ranged_log_offset(k: float = 1.0, ranges: int = 1) -> float:
    """What `ranged_log_power` adds to log(|X|^2/k + eps/k): the constants of the tables
    outside the regime, sum_{i=1}^{n-1} (log R^i + log(T_i + eps/k))."""
    eps = se.LOG_EPS / k
    return sum(math.log(LOG_RANGE_RATIO ** i) + math.log(TABLE_TOP / LOG_RANGE_RATIO ** i + eps)
               for i in range(1, ranges))


class WholeUtterance(nn.Module):
    """`RingExtractor.utterance` as a module's forward: (mixture, film) -> out."""

    def __init__(self, ring: RingExtractor):
        super().__init__()
        self.ring = ring

    def forward(self, mixture, film):
        return self.ring.utterance(mixture, film)


def require_plain_mask(dims: se.Dims, what: str) -> None:
    """The NPU form runs the plain complex mask: refuse deep-filtered weights, saying so."""
    if dims.df_order != 1:
        raise AvedgeError(
            f"{what} deep-filters over {dims.df_order} frames (df_order {dims.df_order}); "
            f"the NPU form runs the plain complex mask (df_order 1): fit it from plain-mask "
            f"weights, e.g. {se.MASK_WEIGHTS_FILE.name} (the default --init of `avedge "
            f"train speech-extractor-npu`)")


class RingExtractor(nn.Module):
    """`Extractor` for one chunk per call, FiLM hoisted, dilated history as ring taps."""

    chunk_samples = se.CHUNK
    lookahead_samples = se.LOOKAHEAD
    sample_rate = se.SAMPLE_RATE
    family = se.NAME

    def __init__(self, model: se.Extractor, power_scale: float = 1.0,
                 log_ranges: int = 1):
        super().__init__()
        require_plain_mask(model.dims, "the model")
        src = copy.deepcopy(model).eval()
        # log(p + eps) = log(p/k + eps/k) + log k: the same function, but an int16 log
        # table over [0, max p/k] with max p/k < 256 keeps its first segment's slope
        # (from log(eps/k) to log(128 steps)) inside int16, which the TOSA spec requires
        # (a larger slope is UNPREDICTABLE). `components` picks k from calibration.
        self.dims = src.dims
        self.stft, self.in_proj = src.stft, src.in_proj
        self.blocks = src.blocks
        for blk in self.blocks:  # folded into FilmCondition's scale and shift, unused here
            blk.norm.requires_grad_(False)
        self.out_norm, self.out_proj = src.out_norm, src.out_proj
        self.power_scale = k = float(power_scale)
        self.log_ranges = int(log_ranges)
        if self.log_ranges < 1:
            raise ValueError(f"log_ranges must be >= 1 (1: one log table); got {log_ranges}")
        # log(p + eps) = ranged sum - offset + log k: the constant goes into in_proj's bias
        # (exactly), so the graph's features need no subtraction of their own.
        self.log_offset = math.log(k) - ranged_log_offset(k, self.log_ranges)
        if self.log_offset != 0.0:
            with torch.no_grad():
                self.in_proj.bias += se.FEATURE_SCALE * self.log_offset * self.in_proj.weight.sum(1)
        # One ring per block: block i's kernel tap j (j < kernel - 1) reads the block's
        # input from (kernel-1-j)*dil calls ago; tap kernel-1 is the current frame, which
        # the graph has itself. Separate rings keep each block's residual stream at its
        # own int8 scale: one frames tensor for all blocks forced a single scale on all
        # of them (the largest block's range; measured: 11 of 12 residual adds at one scale).
        self.tap_lags = [[(b.kernel - 1 - j) * b.dilation for j in range(b.kernel - 1)]
                         for b in self.blocks]
        n = len(self.blocks)
        self.input_names = ("chunk", "film", "stft_state", "ola_state",
                            *(f"taps_{i}" for i in range(n)))
        self.output_names = ("out", "stft_state_out", "ola_state_out",
                             *(f"frames_{i}" for i in range(n)))
        object.__setattr__(self, "_source", model)

    # The runtime's ring-buffer contract (targets/signature.py -> manifest stream.rings).
    @property
    def ring_states(self) -> list[dict]:
        return [{"input": f"taps_{i}", "output": f"frames_{i}",
                 "taps": [[0, lag] for lag in lags]} for i, lags in enumerate(self.tap_lags)]

    def init_state(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """(stft_state, ola_state, taps_0, ..., taps_{N-1}) of a stream's first call."""
        stft_state, ola_state = self.stft.init_state(batch)
        return (stft_state, ola_state, *(torch.zeros(batch, len(lags), self.dims.d_model)
                                          for lags in self.tap_lags))

    def forward(self, chunk, film, stft_state, ola_state, *taps):
        spec, stft_state = self.stft.analyze(chunk, stft_state)  # (B, 2F, 1)
        def ring_taps(i, blk, x):  # this call's taps of block i, from its ring
            return [taps[i][:, j: j + 1] for j in range(blk.kernel - 1)]

        y_spec, frames = self._frames(spec, film, ring_taps)
        out, ola_state = self.stft.synthesize(y_spec, ola_state)
        return (out, stft_state, ola_state, *frames)  # frames_i (B, 1, D)

    def utterance(self, mixture, film):
        """The same function over a whole utterance from a zero state (the ring's initial
        state), with the taps as delayed frames: (B, 128k), (B, 2ND) -> (B, 128k). The
        graph training sees (e.g. quantization-aware) has the ops of `forward`, T frames
        at a time."""
        stft_state, ola_state = self.stft.init_state(mixture.shape[0])
        spec, _ = self.stft.analyze(mixture, stft_state)  # (B, 2F, T)

        def delayed_taps(i, blk, x):  # x (B, T, D) delayed by each tap's lag, zeros before
            t, last = x.shape[1], blk.kernel - 1
            return [nn.functional.pad(x, (0, 0, (last - j) * blk.dilation, 0))[:, :t]
                    for j in range(last)]

        y_spec, _ = self._frames(spec, film, delayed_taps)
        return self.stft.synthesize(y_spec, ola_state)[0]

    def _frames(self, spec, film, taps_of):
        """spec (B, 2F, T) -> masked spec (B, 2F, T), each block's input frames."""
        d = self.dims.d_model
        re, im = spec[:, :N_BINS], spec[:, N_BINS:]
        logp = ranged_log_power(re, im, self.power_scale, self.log_ranges).transpose(
            1, 2)  # (B, T, F), less log_offset
        x = self.in_proj(logp * se.FEATURE_SCALE)  # (B, T, D)
        film = film[:, None, :]
        frames = []
        for i, blk in enumerate(self.blocks):
            frames.append(x)
            last = blk.kernel - 1  # the current frame's tap; the others are history
            h = x * blk.dw[last]
            for j, tap in enumerate(taps_of(i, blk, x)):
                h = h + tap * blk.dw[j]
            scale = film[:, :, 2 * i * d:(2 * i + 1) * d]
            shift = film[:, :, (2 * i + 1) * d:(2 * i + 2) * d]
            h = nn.functional.layer_norm(h, (d,), eps=blk.norm.eps) * scale + shift
            x = x + blk.fc2(blk.act(blk.fc1(h)))
        m = torch.tanh(self.out_proj(self.out_norm(x))).transpose(1, 2)  # (B, 2F, T)
        return se.complex_mul(m, spec), frames

    @torch.no_grad()
    def calibration_inputs(self) -> list[tuple[torch.Tensor, ...]]:
        """The extractor's calibration streams, replayed through this form."""
        film = FilmCondition(self._source)
        out = []
        for enroll, batches in _calibration_streams(self._source):
            f = film(enroll)
            ring = RingHistory(self.ring_states)
            stft_state, ola_state, *taps = self.init_state(1)
            for k, chunk in enumerate(batches):
                if k % se.CALIB_EVERY == 0:
                    out.append((chunk, f, stft_state, ola_state, *taps))
                _, stft_state, ola_state, *frames = self(chunk, f, stft_state, ola_state, *taps)
                ring.push(frames)
                taps = ring.taps()
        return out


class RingHistory:
    """The caller's side of the ring contract, in torch (tests and calibration): for each
    ring (`ring_states` spec) keeps the last `max lag` frame outputs and gathers the taps
    of the next call. The runtime's numpy twin is runtime/ring_state.py (models do not
    import the runtime)."""

    def __init__(self, rings: list[dict]):
        self.sources = [[tuple(t) for t in r["taps"]] for r in rings]
        self.depth = max(lag for src in self.sources for _, lag in src)
        self.history: list[list[torch.Tensor]] = []  # newest first; one entry per call

    def taps(self) -> list[torch.Tensor]:
        if not self.history:
            raise RuntimeError("no frames pushed yet: the first call takes init_state()'s taps")
        out = []
        for k, src in enumerate(self.sources):
            zero = torch.zeros_like(self.history[0][k][:, 0])
            rows = [self.history[lag - 1][k][:, row] if lag <= len(self.history) else zero
                    for row, lag in src]
            out.append(torch.stack(rows, dim=1))
        return out

    def push(self, frames: list[torch.Tensor]) -> None:
        """The frames outputs of one call, one per ring."""
        self.history.insert(0, list(frames))
        del self.history[self.depth:]


def _calibration_streams(model: se.Extractor):
    """(enrollment (1, ENROLL_SAMPLES), [chunk (1, CHUNK), ...]) per calibration stream."""
    for enroll, mix in model.calibration_pairs():
        yield enroll, [mix[:, k * se.CHUNK:(k + 1) * se.CHUNK]
                       for k in range(mix.shape[1] // se.CHUNK)]


def power_scale_for(model: se.Extractor) -> float:
    """k = a power of two with (max calibration power) / k <= 128: see RingExtractor."""
    peak = 0.0
    with torch.no_grad():
        for _, mix in model.calibration_pairs():
            spec, _ = model.stft.analyze(mix, model.stft.init_state(1)[0])
            re, im = spec[:, :N_BINS], spec[:, N_BINS:]
            peak = max(peak, float((re * re + im * im).max()))
    return float(2 ** max(0, math.ceil(math.log2(max(peak, 1e-12) / 128))))


def components(model: se.Extractor, log_ranges: int = 1) -> dict:
    """{name: (module, example_inputs)} of the NPU form, for export_pipeline."""
    if model.dims.speaker.memory_tokens:
        from avedge.runtime.errors import AvedgeError

        raise AvedgeError("the NPU form has no enrollment memory yet (memory_tokens > 0); "
                          "export it from weights without one (speaker.memory_tokens 0)")
    cond = FilmCondition(model)
    ring = RingExtractor(model, power_scale_for(model), log_ranges)
    enroll = torch.randn(1, se.ENROLL_SAMPLES) * 0.1
    with torch.no_grad():
        film = cond(enroll)
    chunk = torch.randn(1, se.CHUNK) * 0.1
    return {"speaker_encoder": (cond, (enroll,)),
            "extractor": (ring, (chunk, film, *ring.init_state(1)))}
