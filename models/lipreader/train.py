"""Training of the lip reader (`avedge train lipreader`).

    avedge train lipreader --corpus BANK --out models/lipreader/weights/lipreader.safetensors \
        --minutes 110 --precision bf16 --threads 2

Data: the bank's utterances rendered once into a ROI cache (models/lipreader/data.py;
built or grown at the start of a run), then windows of at most 100 frames with the
runtime's padding, video augmented like a ROI cropped from compressed video, audio with
babble or noise at -10..20 dB SNR, and a modality drawn per sample (both 50 %, video
only 25 %, audio only 25 %).

Loss (matryoshka over token rates): the front-ends run once per step, then the encoder
and CTC at every rate in RATES, summed. Validation every `eval_every` steps: greedy
CTC WER on val-split voices, per modality, at rates 1 and 4. `--eval-only` scores the
test split (held-out voices and faces) per modality and rate, clean and under babble,
greedy and with the corpus lexicon's beam search.

Resumable (models/common/trainer.py): the checkpoint beside OUT (OUT.ckpt.pt) resumes
the run; OUT holds the moving average of the weights (`--ema`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from avedge.models.common import trainer
from avedge.models.common.batch_loader import BatchLoader, check_workers
from avedge.models.common.weight_average import WeightAverage, check_decay
from avedge.models.lipreader import data as D
from avedge.models.lipreader import model as lr
from avedge.models.lipreader import tokenizer
from avedge.runtime.errors import AvedgeError
from avedge.runtime.fsutil import atomic_write_json

EVAL_RATES = (1, 4)  # rates scored during training (all RATES in the final evaluation)
MODALITY_NAMES = {"video": (1.0, 0.0), "audio": (0.0, 1.0), "both": (1.0, 1.0)}
BABBLE_DB = (5.0, 0.0, -5.0)  # final evaluation's babble SNRs


@dataclass
class TrainConfig:
    corpus: str = ""  # voice bank directory (empty: the corpus default, models/corpus)
    # ROI cache directory (empty: BANK/lipreader-cache); built or grown at the start
    cache: str = ""
    # Weights file to write (.safetensors); its record (.json) and checkpoint (.ckpt.pt)
    # go beside it. Without a checkpoint a run warm-starts from this file if it exists.
    out: str = str(lr.WEIGHTS_FILE)
    init: str | None = None  # trained weights to start a new run from
    steps: int = 4000  # schedule length (cosine decay); a run may stop earlier
    # When set, the cosine schedule also ends after this many minutes of training steps
    # (counted across resumes), whichever comes first: on a shared CPU the steps per
    # hour are not known in advance, and a run cut by --minutes mid-schedule never anneals
    anneal_minutes: float | None = None
    batch: int = 8  # windows per step
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 1e-2  # AdamW's
    warmup: int = 300  # steps of linear learning-rate warmup
    clip: float = 5.0  # gradient norm clip
    seed: int = 0  # sample draws and init
    # A synthesizer kept out of training (its utterances are neither drawn nor used as
    # babble): the held-out-synthesizer test of the final evaluation. piper has one
    # voice, the most natural; empty: none
    holdout_synth: str = "piper"
    face_seed: int = 0  # seed of the speakers' faces (the corpus writer's --seed)
    eval_every: int = 250  # steps between validation scores (the record's history)
    eval_n: int = 48  # validation windows
    checkpoint_minutes: float = 5.0  # wall time between checkpoints
    minutes: float | None = None  # wall budget of this invocation
    threads: int = 2  # torch threads
    # Batch-drawing workers (models/common/batch_loader.py): 1 = a background thread
    workers: int = 1
    # The weights a run writes are the exponential moving average of its steps' weights
    # with this decay (0 = the last step's); the history scores both
    ema: float = 0.999
    # "bf16": forward and backward under bfloat16 autocast (weights, optimizer and loss
    # stay fp32); evaluation and export are always fp32
    precision: str = "fp32"
    device: str = "cpu"  # torch device of the steps (cpu, cuda, cuda:N)
    # "mixed": a modality drawn per sample (both, video only, audio only); "audio":
    # audio-only pretraining (after Auto-AVSR / USR: the encoder and CTC heads learn to
    # spell from sound first), ~10x cheaper per step as the visual front-end is not run;
    # validation then scores audio only
    modality: str = "mixed"
    # Lowest SNR (dB) of the noise or babble mixed into the audio (up to 20 dB). -10:
    # under babble the model must lean on the video; audio-only pretraining learns faster
    # from speech it can hear (0 or 5), the noise comes later
    snr_min: float = D.SNR_MIN
    # Voice and channel augmentation of the audio (pitch, formants, tilt, room, band,
    # codec; data.VOICE_AUG's probabilities times this; 0 = none)
    voice_aug: float = 1.0
    # Share of training windows from neural synthesizers (Kokoro: ~3 % of the bank's
    # utterances, the rest espeak); 0 = as the bank has them
    natural_share: float = 0.25
    # Comma-separated parameter-name prefixes kept fixed (e.g. "visual.stem": the 3D stem,
    # whose backward is ~35 % of a video step; its BatchNorm statistics stay as they are)
    freeze: str = ""
    # Hold the whole visual front-end fixed and train on its features, computed once per
    # cache for the plain ROIs and one augmented copy (models/lipreader/visual_features.py):
    # video steps at about the speed of audio-only ones; "mixed" modality only
    visual_features: bool = False
    # Train also on ROIs that took a user's path: rendered full frames through H.264 and
    # the runtime's mouth tracker and crop (models/lipreader/video_path.py; built beside
    # the ROI cache on first use, ~7 ms a frame). Half the windows read them (with
    # --visual-features: a third variant of the features), and validation reads them
    video_path: bool = False
    # Weight of a loss that asks for blank on the frames a window pads around its clip
    # (nothing is said there; -log p(blank) summed over them, per window). CTC alone is
    # indifferent to timing: the first readers emitted a sentence's first letter at frame 0
    # however late the speech began
    silence_blank: float = 1.0
    # Model dimensions, JSON of lipreader Dims names (default: the reference size)
    dims: dict = field(default_factory=lambda: asdict(lr.Dims()),
                       metadata={"keys": "dimension"})

    def paths(self) -> tuple[Path, Path, Path]:
        """(weights, record, checkpoint)."""
        return tuple(vars(trainer.RunFiles.beside(self.out)).values())


def lr_at(cfg: TrainConfig, step: int, seconds: float = 0.0) -> float:
    """Linear warmup, then cosine to 5 % of the peak at `steps` (or at anneal_minutes of
    training, `seconds` so far, when that comes first)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    if cfg.anneal_minutes:
        t = max(t, min(1.0, seconds / (cfg.anneal_minutes * 60)))
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


# ----------------------------------------------------------------------------- data

class CacheData:
    """The ROI caches of a bank's splits (built on first use of a split)."""

    def __init__(self, cfg: TrainConfig, log=print):
        from avedge.models.corpus.voicebank import open_bank

        self.cfg = cfg
        self.bank = open_bank(cfg.corpus or None)
        self.cache_dir = Path(cfg.cache) if cfg.cache else D.default_cache(self.bank.root)
        self.log = log
        self.splits: dict[str, D.SplitCache] = {}

    def split(self, name: str) -> D.SplitCache:
        if name not in self.splits:
            c = D.build_split(self.bank, name, self.cache_dir, self.cfg.face_seed,
                              progress=self.log)
            if not len(c):
                raise AvedgeError(f"the bank at {self.bank.root} has no {name}-split voices")
            self.splits[name] = c
        return self.splits[name]

    def video_split(self, name: str) -> D.SplitCache:
        """The split with the video-path ROIs as its frames (rendered through H.264 and
        the runtime's tracker; built on first use)."""
        from avedge.models.lipreader import video_path

        key = f"{name}:video"
        if key not in self.splits:
            c = self.split(name)
            video_path.build(self.bank, c, face_seed=self.cfg.face_seed, progress=self.log)
            self.splits[key] = video_path.open_rois(c)
        return self.splits[key]

    def describe(self) -> dict:
        info = {k: v for k, v in self.bank.info().items() if k != "voices"}
        out = {"bank": str(self.bank.root), "bank_info": info, "cache": str(self.cache_dir),
               "face_seed": self.cfg.face_seed}
        for name, c in self.splits.items():
            if name.endswith(":video"):
                out.setdefault("video_path", []).append(name.split(":")[0])
                continue
            out[name] = {"utterances": len(c), "voices": len({u["voice"] for u in c.utts}),
                         "frames": len(c.frames),
                         "synths": sorted({u["synth"] for u in c.utts})}
        return out


def without_synth(cache: D.SplitCache, synth: str) -> D.SplitCache:
    """The cache's utterances minus those of `synth` (same arrays, fewer index entries)."""
    if not synth:
        return cache
    return dataclasses.replace(cache, utts=[u for u in cache.utts if u["synth"] != synth])


def only_synth(cache: D.SplitCache, synth: str) -> D.SplitCache:
    return dataclasses.replace(cache, utts=[u for u in cache.utts if u["synth"] == synth])


TRAIN_MODALITIES = ("mixed", "audio")


def check_modality(name: str) -> str:
    if name not in TRAIN_MODALITIES:
        raise AvedgeError(f"--modality {name!r} is not one of {', '.join(TRAIN_MODALITIES)} "
                          f"(mixed: drawn per sample; audio: audio-only pretraining)")
    return name


def check_config(cfg: TrainConfig) -> lr.Dims:
    """Refuse options out of range, naming what is accepted. -> the model dims."""
    dims = lr.Dims.from_json(cfg.dims)
    check_workers(cfg.workers)
    check_decay(cfg.ema)
    check_modality(cfg.modality)
    if not 0.0 <= cfg.natural_share <= 1.0:
        raise AvedgeError(f"--natural-share {cfg.natural_share:g} is a share of the windows: "
                          f"0..1")
    if cfg.voice_aug < 0:
        raise AvedgeError(f"--voice-aug {cfg.voice_aug:g} scales probabilities: >= 0")
    if not cfg.snr_min < 20:
        raise AvedgeError(f"--snr-min {cfg.snr_min:g} must be below 20 dB (the augmentation's "
                          f"highest SNR)")
    if cfg.silence_blank < 0:
        raise AvedgeError(f"--silence-blank {cfg.silence_blank:g} weighs a loss: >= 0")
    if cfg.video_path and cfg.modality != "mixed":
        raise AvedgeError("--video-path trains on video: use it with --modality mixed")
    if cfg.visual_features and cfg.modality != "mixed":
        raise AvedgeError("--visual-features trains on video features: use it with "
                          "--modality mixed (audio-only training never runs the front-end)")
    trainer.check_precision(cfg.precision)
    return dims


def frozen_modules(model: torch.nn.Module, freeze: str) -> list[torch.nn.Module]:
    """Fix the parameters under each prefix of `freeze`; -> the modules to keep in eval
    mode (so their BatchNorm statistics stay too). An unknown prefix is refused."""
    prefixes = [p.strip() for p in freeze.split(",") if p.strip()]
    names = dict(model.named_modules())
    if bad := [p for p in prefixes if p not in names]:
        tops = sorted({n.split(".")[0] for n in names if n})
        raise AvedgeError(f"--freeze {','.join(bad)}: no such module in the lip reader; "
                          f"modules are dotted names under {', '.join(tops)} (e.g. visual.stem)")
    for p in prefixes:
        for param in names[p].parameters():
            param.requires_grad_(False)
    return [names[p] for p in prefixes]


def draw_items(cache: D.SplitCache, n: int, natural_share: float,
               rng: np.random.Generator) -> np.ndarray:
    """n utterance indices: uniform over the cache, or with `natural_share` of them from
    the non-espeak (neural) voices when there are both kinds."""
    if not natural_share:
        return rng.integers(len(cache), size=n)
    natural = np.array([i for i, u in enumerate(cache.utts) if u["synth"] != "espeak"])
    if len(natural) in (0, len(cache)):
        return rng.integers(len(cache), size=n)
    espeak = np.setdiff1d(np.arange(len(cache)), natural)
    pick_natural = rng.random(n) < natural_share
    return np.where(pick_natural, natural[rng.integers(len(natural), size=n)],
                    espeak[rng.integers(len(espeak), size=n)])


VIDEO_PATH_SHARE = 0.5  # windows that read the video-path ROIs (without --visual-features)


def make_batch(cfg: TrainConfig, cache: D.SplitCache, step: int, visual=None,
               video_cache: D.SplitCache | None = None):
    """The batch of optimizer step `step`: a pure function of (cache, cfg, step).
    visual: the split's VisualFeatures (--visual-features): windows carry them, no ROIs.
    video_cache: the same split with the video-path ROIs as frames (--video-path):
    VIDEO_PATH_SHARE of the windows read those."""
    rng = np.random.default_rng([cfg.seed, step])
    items = draw_items(cache, cfg.batch, cfg.natural_share, rng)
    audio_only = cfg.modality == "audio"
    sources = [cache] * len(items)
    if video_cache is not None:
        pick = np.random.default_rng([cfg.seed, step, 1]).random(len(items))  # own stream:
        sources = [video_cache if p < VIDEO_PATH_SHARE else cache for p in pick]  # same draws
    samples = [D.sample(src, int(i), rng, with_video=not audio_only, snr_min=cfg.snr_min,
                        voice_aug=cfg.voice_aug,
                        visual=None if visual is None else visual.of(cache, int(i)))
               for i, src in zip(items, sources, strict=True)]
    if audio_only:
        mod = np.tile(np.asarray(MODALITY_NAMES["audio"], np.float32), (len(samples), 1))
    else:
        mod = np.stack([D.draw_modality(rng) for _ in samples])
    return D.collate(samples, mod, padding=True)


def eval_windows(cache: D.SplitCache, n: int, seed: int = 1234) -> list[dict]:
    """n fixed windows of distinct utterances (no lead-in, no augmentation, clean)."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(cache))[:n]
    return [D.sample(cache, int(i), None) for i in sorted(idx)]


def with_babble(cache: D.SplitCache, windows: list[dict], snr_db: float,
                seed: int = 99) -> list[dict]:
    """The windows with babble of 4 other voices at snr_db over the real frames."""
    out = []
    for k, w in enumerate(windows):
        rng = np.random.default_rng([seed, k])
        a = w["audio"].copy()
        s = slice(w["lead"] * D.HOP, (w["lead"] + w["frames"]) * D.HOP)
        a[s] = D.add_noise(a[s], D.babble(cache, s.stop - s.start, w["voice"], rng, 4), snr_db)
        out.append({**w, "audio": np.clip(a, -1, 1).astype(np.float32)})
    return out


# ----------------------------------------------------------------------------- scores

def word_errors(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over words."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus word error rate (errors / reference words); jiwer when installed."""
    pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r.strip()]
    if not pairs:
        return float("nan")
    try:
        import jiwer
    except ImportError:
        errs = sum(word_errors(r.split(), h.split()) for r, h in pairs)
        return errs / sum(len(r.split()) for r, _ in pairs)
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


@torch.no_grad()
def log_probs(model: lr.LipReader, windows: list[dict], modality, rates,
              batch: int = 16) -> dict[int, list[np.ndarray]]:
    """rate -> per window (2 * frames, V) log-probs over its real frames (padding dropped)."""
    model.eval()
    dev = next(model.parameters()).device
    out: dict[int, list] = {r: [] for r in rates}
    for k in range(0, len(windows), batch):
        ws = windows[k: k + batch]
        video, audio, mod, _, _ = D.collate(ws, np.tile(np.asarray(modality, np.float32),
                                                        (len(ws), 1)))
        feats = model.features(D.normalise(video.to(dev)), audio.to(dev), mod.to(dev))
        for r in rates:
            lp = model.decode_features(feats, r).float().cpu().numpy()
            k = lr.OUTPUTS_PER_FRAME
            out[r] += [lp[i, k * w["lead"]: k * (w["lead"] + w["frames"])]
                       for i, w in enumerate(ws)]
    return out


def score(model: lr.LipReader, windows: list[dict], rates=EVAL_RATES,
          modalities=tuple(MODALITY_NAMES), lexicon: list[str] | None = None,
          grammar=None) -> dict:
    """{modality: {"rate<r>": {"wer": greedy WER[, "wer_lexicon": word-list beam WER]
    [, "wer_grammar": grammar search WER]}}}; the grammar is read by the task's search
    (runtime/pipelines/lipread.py), its fallback for a window too short included."""
    from avedge.runtime.decoding import ctc
    from avedge.runtime.pipelines.lipread import search

    vocab = list(tokenizer.VOCAB)
    extra = {"vocab": vocab, "separator": tokenizer.SEPARATOR}
    refs = [" ".join(w["words"]) for w in windows]
    res: dict = {}
    for name in modalities:
        lps = log_probs(model, windows, MODALITY_NAMES[name], rates)
        res[name] = {}
        for r in rates:
            greedy = [ctc.greedy(lp, vocab).text for lp in lps[r]]
            entry = {"wer": round(wer(refs, greedy), 4)}
            if lexicon is not None:
                beam = [ctc.beam(lp, vocab, lexicon=lexicon).text for lp in lps[r]]
                entry["wer_lexicon"] = round(wer(refs, beam), 4)
            if grammar is not None:
                hyps = [search(lp, extra, 1.0, grammar=grammar)[0].text for lp in lps[r]]
                entry["wer_grammar"] = round(wer(refs, hyps), 4)
            res[name][f"rate{r}"] = entry
    return res


# ----------------------------------------------------------------------------- loop

def ctc_loss(model: lr.LipReader, feats: torch.Tensor, labels: torch.Tensor,
             label_lengths: torch.Tensor, padding: torch.Tensor | None = None,
             silence_blank: float = 0.0) -> torch.Tensor:
    """Sum over RATES of the CTC loss at that rate (the front-end features shared), plus
    `silence_blank` x -log p(blank) summed over each window's outputs on its `padding`
    frames (B, T), averaged over the windows. A sum, not a mean over the padded outputs:
    the positional prior is one or two wrong outputs among a hundred blank ones, which a
    mean dilutes (session 14: weight 1 as a mean left it in place)."""
    B, T = feats.shape[:2]
    lengths = torch.full((B,), T * lr.OUTPUTS_PER_FRAME, dtype=torch.int64)
    total = feats.new_zeros(())
    quiet = None
    if padding is not None and silence_blank > 0 and bool(padding.any()):
        quiet = padding.repeat_interleave(lr.OUTPUTS_PER_FRAME, dim=1)  # (B, 2T)
    for r in lr.RATES:
        lp = model.decode_features(feats, r).float()  # (B, 2T, V)
        total = total + torch.nn.functional.ctc_loss(
            lp.transpose(0, 1), labels, lengths, label_lengths, blank=0, zero_infinity=True)
        if quiet is not None:
            total = total - silence_blank * (lp[..., 0] * quiet).sum() / B
    return total


def warm_start(path: str, model: lr.LipReader) -> dict:
    p = Path(path)
    if p.name.endswith(".ckpt.pt"):
        ck = trainer.load_checkpoint(p)
        sd = ck["ema"]["model"] if ck.get("ema") else ck["model"]
        steps, minutes = ck["state"]["step"], ck["state"]["train_seconds"] / 60
    else:
        sd = lr.load_weights(p).state_dict()
        rec = p.with_suffix(".json")
        meta = json.loads(rec.read_text()) if rec.is_file() else {}
        steps, minutes = meta.get("steps"), meta.get("train_minutes")
    fresh_heads = _drop_resized_heads(sd, model)
    try:
        model.load_state_dict(sd, strict=not fresh_heads)
    except RuntimeError as exc:
        raise AvedgeError(f"{path!r} does not fit dims {asdict(model.dims)}: pass their "
                          f"--dims, or --fresh to start from scratch") from exc
    out = {"from": p.name, "steps": steps, "train_minutes": minutes}
    if fresh_heads:
        out["heads_reinitialised"] = fresh_heads
    return out


def _drop_resized_heads(sd: dict, model: lr.LipReader) -> list[str]:
    """Output heads whose shape changed (the CTC output went from 25 to 50 Hz after the
    first run) start afresh; the front-ends and encoder keep what they learned."""
    own = model.state_dict()
    drop = [k for k in sd if k.startswith("heads.") and k in own and sd[k].shape != own[k].shape]
    for k in drop:
        del sd[k]
    return drop


def train(cfg: TrainConfig, data=None, fresh: bool = False, progress: bool = True,
          log=print) -> dict:
    """Train (or resume) per cfg. `data` defaults to CacheData(cfg). -> the record dict."""
    torch.set_num_threads(cfg.threads)
    files = trainer.RunFiles.beside(cfg.out)
    out = files.weights
    # Bad options fail before anything is written or the ROI cache is built.
    dims = check_config(cfg)
    dev = trainer.check_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = lr.LipReader(dims).to(dev)
    freeze = ",".join(filter(None, [cfg.freeze, "visual" if cfg.visual_features else ""]))
    fixed = frozen_modules(model, freeze)  # requires_grad survives the loads below
    out.parent.mkdir(parents=True, exist_ok=True)
    start = trainer.starting_point(files, cfg.init, fresh, dev)
    data = data or CacheData(cfg, log)
    train_set = without_synth(data.split("train"), cfg.holdout_synth)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = trainer.new_state()
    ema_state = None
    if start.kind == "checkpoint":
        ck = start.checkpoint
        if (ck_dims := lr.Dims.from_json(ck["config"]["dims"])) != dims:
            raise AvedgeError(f"checkpoint {files.checkpoint} has dims {asdict(ck_dims)}, "
                              f"this run {asdict(dims)}: pass its --dims, or --fresh")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        ema_state = ck.get("ema")
        log(f"resuming from {files.checkpoint} at step {state['step']}")
    elif start.kind == "weights":
        cfg = replace(cfg, init=str(start.weights))
        state["warm_start"] = warm_start(cfg.init, model)
        model.to(dev)
        log(f"starting from {cfg.init}")
    avg = WeightAverage(model, cfg.ema) if cfg.ema > 0 else None
    if avg and ema_state:
        avg.load_state_dict(ema_state)
    val = {"set": None}

    def val_set():
        if val["set"] is None:
            try:
                val["set"] = eval_windows(data.video_split("val") if cfg.video_path
                                          else data.split("val"), cfg.eval_n)
            except AvedgeError as exc:
                log(f"no validation yet: {exc}")
        return val["set"]

    def record(final: dict | None = None) -> dict:
        rec = {"family": lr.NAME, "weights": out.name, "dims": asdict(dims),
               "params": sum(p.numel() for p in model.parameters()),
               "corpus": data.describe(), "config": asdict(cfg),
               "steps": state["step"], "samples": state["samples"],
               "video_hours": round(state["samples"] * lr.WINDOW / lr.FPS / 3600, 2),
               "train_minutes": round(state["train_seconds"] / 60, 1),
               "sessions": state["sessions"], "machine": trainer.machine(),
               "roi_norm": {"mean": lr.ROI_MEAN, "std": lr.ROI_STD},
               "history": state["history"][-40:]}
        if "warm_start" in state:
            rec["warm_start"] = state["warm_start"]
        if "visual_features" in state:
            rec["visual_features"] = state["visual_features"]
        if final:
            rec["eval"] = final
        elif (files.record.exists() and "eval" in (old := json.loads(files.record.read_text()))
              and old.get("steps") == state["step"]):
            rec["eval"] = old["eval"]
        return rec

    def step(k: int, batch) -> tuple[float, dict]:
        video, audio, mod, labels, lens, padding = batch
        video = video.to(dev, non_blocking=True)
        if not cfg.visual_features:
            video = D.normalise(video)
        audio, mod = audio.to(dev), mod.to(dev)
        model.train()
        for m in fixed:
            m.eval()
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, k, state["train_seconds"])
        with trainer.autocast(dev, cfg.precision):
            feats = model.features(video, audio, mod, skip_absent=True,
                                   visual_given=cfg.visual_features)
            loss = ctc_loss(model, feats, labels.to(dev), lens.to(dev), padding.to(dev),
                            cfg.silence_blank)
        gnorm = trainer.optimizer_step(loss, opt, model.parameters(), cfg.clip, avg, model, k)
        state["samples"] += cfg.batch
        return float(loss.detach()), {"gnorm": f"{gnorm:.1f}", "lr": f"{opt.param_groups[0]['lr']:.1e}"}

    scored = ("audio",) if cfg.modality == "audio" else tuple(MODALITY_NAMES)

    def evaluate_now(k: int) -> dict | None:
        if not val_set():
            return None
        entry = {"val": score(model, val_set(), modalities=scored)}
        if avg:
            entry["val_ema"] = score(avg.model, val_set(), modalities=scored)
        best = entry.get("val_ema", entry["val"])
        log(f"step {k}: loss {state.get('loss_ema', float('nan')):.3f}, val WER (rate 1) "
            + ", ".join(f"{m} {best[m]['rate1']['wer']:.3f}" for m in best))
        return entry

    def save() -> None:
        trainer.save_averaged_run(files, model, avg, opt, state, asdict(cfg), lr.save_weights,
                                  record())

    visual = video_train = None
    if cfg.video_path:
        video_train = without_synth(data.video_split("train"), cfg.holdout_synth)
    if cfg.visual_features:  # after the loads: the features of the front-end that trains
        from avedge.models.lipreader import visual_features as VF

        visual = VF.build(model.visual, train_set, seed=cfg.seed, log=log)
        if video_train is not None:  # its features: one more variant of every frame
            visual = VF.Stacked([visual, VF.build(model.visual, video_train, variants=1,
                                                  seed=cfg.seed, log=log, tag="video")])
            video_train = None
        state["visual_features"] = visual.meta
    loader = BatchLoader(functools.partial(make_batch, cfg, visual=visual,
                                           video_cache=video_train),
                         train_set, state["step"], cfg.workers)
    trainer.run_loop(state, trainer.LoopSettings(cfg.steps, cfg.minutes, cfg.checkpoint_minutes,
                                                 cfg.eval_every),
                     batches=loader, step=step, evaluate=evaluate_now,
                     save=save, progress=progress, log=log)
    log(f"saved {out} and {files.checkpoint} at step {state['step']}")
    return record()


def final_eval(cfg: TrainConfig, n: int = 200, data=None, log=print) -> dict:
    """Test split (held-out voices and faces): WER per modality and rate, clean and
    under babble, greedy, with the corpus lexicon's beam and with the corpus grammar;
    written into the record."""
    from avedge.models.lipreader.lexicon import corpus_constraints

    out, rec_path, _ = cfg.paths()
    data = data or CacheData(cfg, log)
    test = data.split("test")
    model = lr.load_weights(out)
    windows = eval_windows(test, n)
    beams = corpus_constraints()
    res = {"clean": score(model, windows, lr.RATES, **beams)}
    for snr in BABBLE_DB:  # video-only does not hear the babble: scored clean only
        res[f"babble_{snr:g}db"] = score(model, with_babble(test, windows, snr), lr.RATES,
                                         ("audio", "both"), **beams)
    if cfg.holdout_synth:  # the synthesizer training never heard, from the train split
        held = eval_windows(only_synth(data.split("train"), cfg.holdout_synth), n)
        if held:
            res[f"heldout_synth_{cfg.holdout_synth}"] = score(model, held, lr.RATES, **beams)
    res["conditions"] = (f"{len(windows)} test-split windows (held-out voices and faces), "
                         f"<= {lr.WINDOW} frames, whole utterances or word-bounded crops, "
                         f"no augmentation; babble = 4 other test voices; eager fp32")
    rec = json.loads(rec_path.read_text()) if rec_path.exists() else {}
    rec["eval"] = res
    rec.setdefault("corpus", {}).update({"test": data.describe().get("test")})
    atomic_write_json(rec_path, rec, indent=1)
    return res
