"""Training of the target speech extractor (`avedge train speech-extractor`).

    avedge train speech-extractor --corpus ~/.cache/avedge/voicebank \
        --out models/speech_extractor/weights/speech_extractor_df.safetensors --steps 6000 --minutes 90

`--init FILE` starts a new run from trained weights grown to `--dims` (how the shipped
deep-filtering model came from the plain-mask one: see its record's "warm_start").

Mixtures come on the fly from the corpus voice bank (models/corpus/mixtures.py). The
loss is negative SI-SDR between the (lookahead-aligned) output and the target. A
curriculum widens SIR/SNR and the number of interferers over the first 40 % of steps.

Resumable (the loop is models/common/trainer.py): every `checkpoint_minutes` (and on
SIGTERM / Ctrl-C / the time budget) the full training state goes to OUT.ckpt.pt, and the
weights (OUT) plus a record (OUT with .json) are rewritten, so the shipped files always
match the last checkpoint. Run the same command again to continue. Checkpoints stay on
the machine that wrote them (not in the repository): a run without one warm-starts from
OUT itself when it exists (the shipped weights), past the curriculum with its schedule
started over; `--fresh` starts from scratch (or from `--init`). OUT holds the moving
average of the run's weights (`--ema`; the checkpoint keeps both), and `--precision bf16`
runs the steps under bfloat16 autocast (see TrainConfig).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from avedge.models.common import trainer
from avedge.models.common.batch_loader import BatchLoader, check_workers
from avedge.models.common.metrics import standard_error
from avedge.models.common.weight_average import WeightAverage, check_decay
from avedge.models.speech_extractor import model as se
from avedge.models.speech_extractor.speaker_encoder import grow_encoder
from avedge.runtime.errors import AvedgeError
from avedge.runtime.fsutil import atomic_path, atomic_write_json

CURRICULUM = (  # (fraction of steps where the phase ends, sampler settings)
    (0.15, {"sir_db": (0, 10), "snr_db": (10, 20), "n_interferers": (1, 1)}),
    (0.40, {"sir_db": (-3, 8), "snr_db": (3, 18), "n_interferers": (1, 2)}),
    (1.00, {"sir_db": (-5, 5), "snr_db": (0, 15), "n_interferers": (1, 2)}),
)
PRECISIONS = trainer.PRECISIONS  # of the training step (TrainConfig.precision)
GAIN_DB = (-12.0, 6.0)  # random input level on top of the corpus levels
ENROLL_SECONDS = (1.5, 4.0)  # enrollment lengths seen in training (looped to 5 s)


@dataclass
class TrainConfig:
    corpus: str = ""  # voice bank directory (empty: the corpus default, models/corpus)
    # Weights file to write (.safetensors); its record (.json) and checkpoint (.ckpt.pt)
    # go beside it. Without a checkpoint a run warm-starts from this file if it exists.
    out: str = str(se.WEIGHTS_FILE)
    steps: int = 6000  # schedule length (cosine decay); a run may stop earlier
    batch: int = 8  # mixtures per step
    seconds: float = 4.0  # length of a training mixture
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 1e-2  # AdamW's
    warmup: int = 200  # steps of linear learning-rate warmup
    clip: float = 5.0  # gradient norm clip
    seed: int = 0  # corpus draws and init
    # Synthesizers never seen in training. piper has one voice (the most natural, "joe"):
    # held out, it is the target of the held-out-synthesizer test (eval_sets).
    holdout_synth: str | None = "piper"
    natural_share: float = 0.5  # share of training targets from neural (non-espeak) voices
    # Share of training targets from real recorded people (festival/KLettres voices of the
    # bank, models/corpus/voices.py REAL_SYNTHS; issue #19), taken before natural_share
    # splits the rest. Ignored when the bank has none.
    real_share: float = 0.3
    # Share of mixtures with no interfering talker, only noise (issue #4: the extractor
    # must not lose to a denoiser there). Without them the model never saw a lone voice
    # and, unsure of a voice unlike its training ones, turned it down: piper noise only
    # +1.3 dB against DeepFilterNet3's +8 (session 5).
    solo_share: float = 0.15
    speaker_loss: float = 0.3  # weight of the speaker-ID loss on the embedding
    eval_every: int = 250  # steps between validation scores (the record's history)
    eval_n: int = 48  # validation mixtures
    checkpoint_minutes: float = 5.0  # wall time between checkpoints
    minutes: float | None = None  # wall budget of this invocation
    threads: int = 2  # torch threads
    # Mixture-drawing workers (models/batch_loader.py): 1 = a background thread, enough
    # on 2 CPU cores; a GPU machine needs processes to keep up (a batch of 32 costs ~0.7 s
    # of one core). New voices of a bank still being built reach processes only at the
    # next run.
    workers: int = 1
    # The weights a run writes are the exponential moving average of its steps' weights
    # with this decay (models/weight_average.py; 0 = the last step's). The history
    # scores both ("val" the training weights, "val_ema" the average).
    ema: float = 0.999
    # "bf16": forward and backward under bfloat16 autocast (weights, optimizer and loss
    # stay fp32). 2.4x the steps per hour on a CPU with AVX512-BF16 (the dev VM's EPYC);
    # outputs agree with fp32 to ~40 dB SI-SDR, far above what the model reaches.
    # Evaluation and export are always fp32.
    precision: str = "fp32"
    device: str = "cpu"  # e.g. "cuda" on a GPU machine; checkpoints load on either
    # Weights (.safetensors) or a checkpoint (.ckpt.pt) a new run starts from, grown to
    # `dims` (se.grow: e.g. more deep-filter taps, the function unchanged at step 0). The
    # schedule starts over and skips the curriculum (the model has been through it).
    init: str | None = None
    # Model dimensions, JSON of se.Dims names (default: the reference size).
    dims: dict = field(default_factory=lambda: asdict(se.Dims()),
                       metadata={"keys": "dimension"})

    def paths(self) -> tuple[Path, Path, Path]:
        """(weights, record, checkpoint)."""
        return tuple(vars(trainer.RunFiles.beside(self.out)).values())


def lr_at(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def phase_at(cfg: TrainConfig, step: int) -> int:
    if cfg.init:
        return len(CURRICULUM) - 1
    frac = step / max(1, cfg.steps)
    return next(i for i, (end, _) in enumerate(CURRICULUM) if frac < end or end >= 1.0)


# ----------------------------------------------------------------------------- data

class CorpusData:
    """Mixtures from a voice bank: one MixtureSampler per curriculum phase, plus eval sets."""

    def __init__(self, cfg: TrainConfig):
        from avedge.models.corpus.mixtures import MixtureSampler
        from avedge.models.corpus.voicebank import open_bank

        self.cfg = cfg
        self._open, self._sampler = open_bank, MixtureSampler
        self.refresh()

    def refresh(self) -> bool:
        """(Re)open the bank; True when it gained voices since the last call (a bank
        still being built can be trained on; new voices join at the next checkpoint)."""
        bank = self._open(self.cfg.corpus)
        if getattr(self, "bank", None) is not None and len(bank.by_voice) == len(
                self.bank.by_voice):
            return False
        self.bank = bank
        self.samplers = [self._sampler(bank, split="train", seed=self.cfg.seed,
                                       seconds=self.cfg.seconds, p_solo=self.cfg.solo_share,
                                       **kw) for _, kw in CURRICULUM]
        voices = weighted_voices(self.samplers[0].voices, self.cfg.holdout_synth,
                                 self.cfg.natural_share, self.cfg.real_share)
        for smp in self.samplers:
            smp.voices = voices
        return True

    @property
    def voice_index(self) -> dict[str, int]:
        """Every training voice of the catalogue -> class of the speaker-ID loss (fixed
        even while the bank is still being built)."""
        if not hasattr(self, "_voice_index"):
            from avedge.models.corpus.voices import ALL_SYNTHS, catalogue, split_of

            # Real voices come last in the catalogue: the synthetic classes keep their index.
            ids = [v.id for v in catalogue(ALL_SYNTHS) if split_of(v.id) == "train"
                   and v.synth != self.cfg.holdout_synth]
            self._voice_index = {v: i for i, v in enumerate(ids)}
        return self._voice_index

    def sample(self, phase: int, index: int) -> dict:
        return self.samplers[phase].sample_at(index)

    def eval_set(self, split: str, n: int, holdout_synth=None, seed: int = 1234,
                 **kw) -> list[dict]:
        from avedge.models.corpus.mixtures import eval_mixtures

        return eval_mixtures(self.bank, split=split, n=n, seed=seed, holdout_synth=holdout_synth,
                             **kw)

    def real_val_set(self, n: int, seed: int = 1234) -> list[dict]:
        """Validation on real speech: targets are the bank's real people of the val split
        (REAL_VAL), interferers and babble any val voice, issue #4 conditions. Empty when
        the bank has no real val voice."""
        from avedge.models.corpus.voices import REAL_SYNTHS

        smp = self._sampler(self.bank, split="val", seed=seed, augment=False,
                            n_interferers=1, sir_db=0.0, snr_db=5.0)
        own = [v for v in smp.voices if v.partition(":")[0] in REAL_SYNTHS]
        if not own:
            return []
        others = [v for v in smp.voices if v not in own]
        return _targets_from(smp, own, others, n, max(1, len(others) // len(own)))

    def heldout_synth_set(self, n: int, seed: int = 1234, **kw) -> list[dict]:
        """Mixtures whose *target* is a voice of the held-out synthesizer, interfering
        talkers and babble from the test voices of the others, issue #4 conditions."""
        synth = self.cfg.holdout_synth
        smp = self._sampler(self.bank, split="test", seed=seed, augment=False,
                            **{"n_interferers": 1, "sir_db": 0.0, "snr_db": 5.0, **kw})
        own = [v for v in self.bank.by_voice if v.partition(":")[0] == synth
               and len(self.bank.by_voice[v]) >= 2]
        if not own:
            raise AvedgeError(f"the bank has no {synth!r} voice with 2+ utterances")
        others = [v for v in smp.voices if v.partition(":")[0] != synth]
        return _targets_from(smp, own, others, n, len(others))  # ~half the draws own

    def describe(self) -> dict:
        info = {k: v for k, v in self.bank.info().items() if k != "voices"}
        if not info:  # a bank still being built has no bank.json yet: count what is there
            by_synth: dict = {}
            for v, utts in self.bank.by_voice.items():
                d = by_synth.setdefault(v.partition(":")[0], {"voices": 0, "utterances": 0})
                d["voices"] += 1
                d["utterances"] += len(utts)
            info = {"complete": False, "synths": by_synth}
            meta = next(iter(sorted((Path(self.bank.root) / "voices").glob("*.json"))), None)
            if meta is not None:
                info["seed"] = json.loads(meta.read_text()).get("seed")
        train_voices = sorted(set(self.samplers[-1].voices))
        synth_of = [v.partition(":")[0] for v in self.samplers[-1].voices]
        return {"bank": str(self.bank.root), "bank_info": info,
                "train_voices": len(train_voices),
                "target_share": {s: round(synth_of.count(s) / len(synth_of), 3)
                                 for s in sorted(set(synth_of))},
                "train_utterances": sum(len(self.bank.by_voice[v]) for v in train_voices),
                "train_synths": sorted({v.partition(":")[0] for v in train_voices})}


def _targets_from(smp, own: list[str], others: list[str], n: int, repeat: int) -> list[dict]:
    """The first n of a sampler's mixtures whose target is one of `own`; `own` voices are
    repeated `repeat` times among the others (interferers and babble) to draw them often."""
    smp.voices = own * repeat + others
    out, i = [], 0
    while len(out) < n:
        ex = smp.sample_at(i)
        i += 1
        if ex["voice"] in own:
            out.append(ex)
    return out


def weighted_voices(voices: list[str], exclude_synth: str | None, natural_share: float,
                    real_share: float = 0.0):
    """Drop a held-out synthesizer; repeat real voices so that they are `real_share` of the
    targets, and of the rest neural voices so that they are `natural_share` (espeak has
    ~20x more voices than the neural synthesizers, ~40x more than real people)."""
    from avedge.models.corpus.voices import REAL_SYNTHS

    voices = [v for v in voices if v.partition(":")[0] != exclude_synth]
    real = [v for v in voices if v.partition(":")[0] in REAL_SYNTHS]
    if real and 0 < real_share < 1:
        rest = weighted_voices([v for v in voices if v not in real], None, natural_share)
        rep = max(1, round(real_share / (1 - real_share) * len(rest) / len(real)))
        return rest + real * rep
    esp = [v for v in voices if v.startswith("espeak:")]
    nat = [v for v in voices if not v.startswith("espeak:")]
    if not esp or not nat or not 0 < natural_share < 1:
        return voices
    rep = max(1, round(natural_share / (1 - natural_share) * len(esp) / len(nat)))
    return esp + nat * rep


def make_batch(data, cfg: TrainConfig, phase: int, start: int, rng: np.random.Generator):
    """-> mixture (B, L), target (B, L), enrollment (B, ENROLL_SAMPLES) float32 tensors,
    speaker class (B,) int64 (-1 where unknown)."""
    mixes, targets, enrolls, labels = [], [], [], []
    index = getattr(data, "voice_index", {})
    for i in range(cfg.batch):
        ex = data.sample(phase, start + i)
        # A shifted or warped voice is a new speaker: no class of the speaker-ID loss.
        new_voice = ex.get("voice_shift") or ex.get("formant_warp", 1.0) != 1.0
        labels.append(-1 if new_voice else index.get(ex.get("voice"), -1))
        g = 10 ** (rng.uniform(*GAIN_DB) / 20)
        mixes.append(np.clip(ex["mixture"] * g, -1.0, 1.0))
        targets.append(ex["target"] * g)
        e = ex["enrollment"]
        n_e = int(rng.uniform(*ENROLL_SECONDS) * se.SAMPLE_RATE)
        if len(e) > n_e:
            s = int(rng.integers(len(e) - n_e + 1))
            e = e[s: s + n_e]
        e = e * 10 ** (rng.uniform(-10, 10) / 20)
        enrolls.append(se.fit_enrollment(torch.from_numpy(np.ascontiguousarray(e, np.float32))))
    n = min(len(m) for m in mixes) // se.CHUNK * se.CHUNK
    mix = torch.from_numpy(np.stack([m[:n] for m in mixes]).astype(np.float32))
    tgt = torch.from_numpy(np.stack([t[:n] for t in targets]).astype(np.float32))
    return mix, tgt, torch.stack(enrolls), torch.tensor(labels, dtype=torch.int64)


def batch_for_step(cfg: TrainConfig, data, step: int):
    """The batch of optimizer step `step`: a pure function of (cfg, step)."""
    return make_batch(data, cfg, phase_at(cfg, step), step * cfg.batch,
                      np.random.default_rng([cfg.seed, step]))


# ----------------------------------------------------------------------------- eval

@torch.no_grad()
def si_sdr_scores(model: se.Extractor, examples: list[dict],
                  batch: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example SI-SDR (dB) of the output and of the mixture, both against the target,
    over a list of {"mixture", "target", "enrollment"} dicts: two (N,) tensors."""
    model.eval()
    model.speaker_encoder.eval()
    dev = next(model.parameters()).device
    s_out, s_in = [], []
    for k in range(0, len(examples), batch):
        exs = examples[k: k + batch]
        n = min(len(e["mixture"]) for e in exs)
        mix = torch.from_numpy(np.stack([e["mixture"][:n] for e in exs]).astype(np.float32))
        tgt = torch.from_numpy(np.stack([e["target"][:n] for e in exs]).astype(np.float32))
        enr = torch.stack([se.fit_enrollment(torch.from_numpy(
            np.ascontiguousarray(e["enrollment"], np.float32))) for e in exs])
        mix, tgt, enr = mix.to(dev), tgt.to(dev), enr.to(dev)
        est = se.extract(model, mix, model.speaker_encoder(enr))
        s_out.append(se.si_sdr(est, tgt).cpu())
        s_in.append(se.si_sdr(mix, tgt).cpu())
    return torch.cat(s_out), torch.cat(s_in)


def evaluate(model: se.Extractor, examples: list[dict], batch: int = 16) -> dict:
    """SI-SDR / SI-SDRi (dB) over a list of {"mixture", "target", "enrollment"} dicts."""
    s_out, s_in = si_sdr_scores(model, examples, batch)
    gain = s_out - s_in
    return {"n": len(examples), "si_sdr_db": round(float(s_out.mean()), 3),
            "si_sdri_db": round(float(gain.mean()), 3),
            "si_sdri_median_db": round(float(gain.median()), 3),
            "si_sdri_se_db": round(standard_error(gain), 3)}  # standard error of the mean


# ----------------------------------------------------------------------------- loop

def warm_start(path: str, model: se.Extractor, spk_head: torch.nn.Module) -> dict:
    """Load trained weights or a checkpoint into a new run's model (grown to its dims)
    -> where they came from: {"from", "steps", "train_minutes"}."""
    p = Path(path)
    if not p.is_file():
        raise AvedgeError(f"--init {path!r} does not exist (want .safetensors weights or a "
                          f".ckpt.pt checkpoint of {se.NAME})")
    if p.name.endswith(".ckpt.pt"):
        ck = trainer.load_checkpoint(p)
        # The averaged weights when the run kept them: what it wrote and was scored on.
        ext, enc = (ck["ema"]["model"], ck["ema"]["encoder"]) if ck.get("ema") else (
            ck["model"], ck["encoder"])
        head = ck.get("spk_head", {}).get("weight")
        steps, minutes = ck["state"]["step"], ck["state"]["train_seconds"] / 60
    else:
        src = se.load_weights(p)
        ext, enc, head = src.state_dict(), src.speaker_encoder.state_dict(), None
        rec = p.with_suffix(".json")
        meta = json.loads(rec.read_text()) if rec.is_file() else {}
        steps, minutes = meta.get("steps"), meta.get("train_minutes")
    try:
        se.grow(model, ext)
        grow_encoder(model.speaker_encoder, enc)
    except (ValueError, RuntimeError) as exc:
        raise AvedgeError(f"{path!r} does not fit dims {asdict(model.dims)}: {exc}; "
                          f"pass their --dims, or --fresh to start from scratch") from exc
    if head is not None and head.shape == spk_head.weight.shape:
        with torch.no_grad():
            spk_head.weight.copy_(head)
    return {"from": p.name, "steps": steps, "train_minutes": minutes}


def train(cfg: TrainConfig, data=None, fresh: bool = False, progress: bool = True,
          log=print) -> dict:
    """Train (or resume) per cfg. `data` defaults to CorpusData(cfg). -> the record dict.

    Starts from the checkpoint beside cfg.out, else from trained weights (cfg.init, else
    cfg.out itself when it exists), else from scratch (models/common/trainer.py)."""
    torch.set_num_threads(cfg.threads)
    files = trainer.RunFiles.beside(cfg.out)
    out = files.weights
    out.parent.mkdir(parents=True, exist_ok=True)  # before minutes of training, not at the save
    dims = se.Dims.from_json(cfg.dims)  # bad dims fail before the corpus is read
    for name in ("natural_share", "real_share", "solo_share"):  # silently ignored otherwise
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise AvedgeError(f"--{name.replace('_', '-')} is a share of the training "
                              f"mixtures, 0..1; got {getattr(cfg, name)}")
    check_workers(cfg.workers)  # and so does a worker count that cannot draw batches
    check_decay(cfg.ema)  # and a decay that is no average
    trainer.check_precision(cfg.precision)
    dev = trainer.check_device(cfg.device)
    start = trainer.starting_point(files, cfg.init, fresh, dev)
    data = data or CorpusData(cfg)
    torch.manual_seed(cfg.seed)
    model = se.Extractor(dims)
    enc = model.speaker_encoder
    n_classes = len(getattr(data, "voice_index", {}))
    # Speaker-ID head on the embedding (cosine logits): trains the encoder to tell voices
    # apart from the first step, instead of only through the extraction loss.
    spk_head = torch.nn.Linear(dims.speaker.emb_dim, max(1, n_classes), bias=False)
    for m in (model, enc, spk_head):  # the encoder is not a submodule of the extractor
        m.to(dev)
    params = list(model.parameters()) + list(enc.parameters()) + list(spk_head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = trainer.new_state()
    ema_state = None
    if start.kind == "checkpoint":
        ck = start.checkpoint
        if (ck_dims := se.Dims.from_json(ck["config"]["dims"])) != dims:
            raise AvedgeError(
                f"checkpoint {files.checkpoint} has dims {asdict(ck_dims)}, this run "
                f"{asdict(dims)}: pass its dims (--dims '{{\"df_order\": 1}}' for a "
                f"plain-mask checkpoint) to resume it, or --fresh to restart")
        model.load_state_dict(ck["model"])
        enc.load_state_dict(ck["encoder"])
        spk_head.load_state_dict(ck["spk_head"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        ema_state = ck.get("ema")  # None in checkpoints written before the average
        log(f"resuming from {files.checkpoint} at step {state['step']}")
        if "warm_start" in state and not cfg.init:  # keep the warm start's schedule
            cfg = replace(cfg, init=ck["config"]["init"])
    elif start.kind == "weights":
        # The schedule starts over past the curriculum (phase_at): the model has been
        # through it. Recorded as the run's init so that a resume keeps that schedule.
        cfg = replace(cfg, init=str(start.weights))
        state["warm_start"] = warm_start(cfg.init, model, spk_head)
        for m in (model, enc, spk_head):
            m.to(dev)
        log(f"starting from {cfg.init} ({state['warm_start']['steps']} steps before)")
    avg = WeightAverage(model, cfg.ema) if cfg.ema > 0 else None
    if avg and ema_state:
        avg.load_state_dict(ema_state)  # else it starts from the weights just loaded
    val = {"set": None}

    def val_set():  # built on first use: a bank still being built may lack val voices yet
        if val["set"] is None:
            try:
                val["set"] = data.eval_set("val", cfg.eval_n, holdout_synth=None)
                real = getattr(data, "real_val_set", None)
                val["real"] = real(cfg.eval_n) if real else []
            except AvedgeError as exc:
                log(f"no validation yet: {exc}")
        return val["set"]

    def record(final_eval: dict | None = None) -> dict:
        rec = {"family": se.NAME, "weights": out.name, "dims": asdict(dims),
               "params": {"extractor": sum(p.numel() for p in model.parameters()),
                          "speaker_encoder": sum(p.numel() for p in enc.parameters())},
               "corpus": data.describe(), "config": asdict(cfg),
               "steps": state["step"], "samples": state["samples"],
               "audio_hours": round(state["samples"] * cfg.seconds / 3600, 2),
               "train_minutes": round(state["train_seconds"] / 60, 1),
               "sessions": state["sessions"], "machine": trainer.machine(),
               "curriculum": [{"until": e, **{k: list(v) for k, v in kw.items()}}
                              for e, kw in CURRICULUM],
               "history": state["history"][-40:]}
        if "warm_start" in state:
            rec["warm_start"] = state["warm_start"]
        if final_eval:
            rec["eval"] = final_eval
        elif (files.record.exists() and "eval" in (old := json.loads(files.record.read_text()))
              and old.get("steps") == state["step"]):
            rec["eval"] = old["eval"]
        return rec

    def step(k: int, batch) -> tuple[float, dict]:
        mix, tgt, enr, labels = (t.to(dev, non_blocking=True) for t in batch)
        model.train()
        enc.train()
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, k)
        with trainer.autocast(dev, cfg.precision):
            emb = enc(enr)
            est = se.extract(model, mix, emb)
        emb, est = emb.float(), est.float()
        loss = -se.si_sdr(est, tgt).clamp(max=40.0).mean()
        known = labels >= 0
        if cfg.speaker_loss > 0 and n_classes and bool(known.any()):
            logits = 10.0 * emb[known, :dims.speaker.emb_dim] @ torch.nn.functional.normalize(
                spk_head.weight, dim=1).T
            loss = loss + cfg.speaker_loss * torch.nn.functional.cross_entropy(
                logits, labels[known])
        gnorm = trainer.optimizer_step(loss, opt, params, cfg.clip, avg, model, k)
        state["samples"] += cfg.batch
        return float(loss.detach()), {"phase": phase_at(cfg, k), "gnorm": f"{gnorm:.1f}"}

    def evaluate_now(k: int) -> dict | None:
        if not val_set():
            return None
        entry = {"val": evaluate(model, val_set())}
        msg = f"step {k}: val SI-SDRi {entry['val']['si_sdri_db']:.2f} dB"
        if avg:
            entry["val_ema"] = evaluate(avg.model, val_set())
            msg += f", averaged weights {entry['val_ema']['si_sdri_db']:.2f} dB"
        if val.get("real"):  # real recorded people held out (issue #19): the curve that matters
            entry["val_real_ema"] = evaluate(avg.model if avg else model, val["real"])
            msg += f"; real voices {entry['val_real_ema']['si_sdri_db']:.2f} dB"
        log(msg)
        return entry

    def save() -> None:
        trainer.save_averaged_run(files, model, avg, opt, state, asdict(cfg), se.save_weights,
                                  record(), encoder=enc, spk_head=spk_head)

    def after_checkpoint() -> None:
        if hasattr(data, "refresh") and data.refresh():
            log(f"corpus grew: {data.describe()['train_voices']} training voices")

    loader = BatchLoader(functools.partial(batch_for_step, cfg), data, state["step"],
                         cfg.workers)
    trainer.run_loop(state, trainer.LoopSettings(cfg.steps, cfg.minutes, cfg.checkpoint_minutes,
                                                 cfg.eval_every),
                     batches=loader, step=step, evaluate=evaluate_now, save=save,
                     after_checkpoint=after_checkpoint, progress=progress, log=log)
    log(f"saved {out} and {files.checkpoint} at step {state['step']}")
    return record()


def eval_sets(data, n: int, holdout_synth: str | None, noise_only: bool = False) -> dict:
    """The issue #4 conditions (2 talkers at 0 dB SIR, noise at 5 dB SNR; or noise only):
    "heldout_voices" = the corpus test split (voices never trained on), also per
    synthesizer; "heldout_synth_<s>" = targets from the synthesizer kept out of training
    (interferers from the test voices)."""
    kw = {"n_interferers": 0} if noise_only else {}
    test = data.eval_set("test", n, holdout_synth=None, **kw)
    sets = {"heldout_voices": test}
    for synth in sorted({e.get("synth", "?") for e in test}):
        sets[f"heldout_voices_{synth}"] = [e for e in test if e.get("synth", "?") == synth]
    if holdout_synth and hasattr(data, "heldout_synth_set"):
        sets[f"heldout_synth_{holdout_synth}"] = data.heldout_synth_set(n, **kw)
    return sets


def final_eval(cfg: TrainConfig, n: int = 100, data=None) -> dict:
    """Score the weights in cfg.out on the issue #4 eval sets and write them into the record."""
    out, rec_path, _ = cfg.paths()
    data = data or CorpusData(cfg)
    model = se.load_weights(out)
    res = {name: evaluate(model, exs) for name, exs in eval_sets(
        data, n, cfg.holdout_synth).items()}
    res.update({f"{name}_noise_only": evaluate(model, exs) for name, exs in eval_sets(
        data, n, cfg.holdout_synth, noise_only=True).items()})
    res["conditions"] = ("4 s mixtures, target + 1 interfering talker at 0 dB SIR + noise at "
                         "5 dB SNR (noise_only: no talker), no augmentation, eager fp32")
    rec = json.loads(rec_path.read_text()) if rec_path.exists() else {}
    rec["eval"] = res
    atomic_write_json(rec_path, rec, indent=1)
    return res


def write_calibration_set(corpus: str, n: int = 12, seconds: float = 3.0, seed: int = 99,
                          out: str | Path = se.CALIB_FILE) -> dict:
    """The mixtures static int8 calibrates on (`Extractor.calibration_pairs`): `n`
    val-split mixtures of the issue #4 conditions, int16, with their enrollments. Three
    mixtures were too few: the NPU int8 graph lost 0.50 dB against fp32 calibrated on
    them, 0.06 dB on 12 (100 test mixtures; benchmarks/RESULTS.md, session 4). Written
    atomically."""
    from avedge.models.corpus.mixtures import eval_mixtures

    exs = eval_mixtures(corpus, "val", n=n, seconds=seconds, seed=seed)
    if not exs:
        raise AvedgeError(f"the corpus {corpus!r} has no val-split mixtures to calibrate on")
    longest = max(len(e["enrollment"]) for e in exs)

    def pcm(x, size):
        x = np.clip(np.asarray(x, np.float64), -1.0, 1.0) * 32767
        return np.pad(np.round(x).astype(np.int16), (0, size - len(x)))
    out = Path(out)
    with atomic_path(out) as tmp:
        np.savez_compressed(tmp, mixture=np.stack([pcm(e["mixture"], len(exs[0]["mixture"]))
                                                   for e in exs]),
                            enrollment=np.stack([pcm(e["enrollment"], longest) for e in exs]),
                            enrollment_len=np.array([len(e["enrollment"]) for e in exs]),
                            voices=np.array([e.get("voice", "?") for e in exs]),
                            seed=np.array(seed))
    return {"file": str(out), "mixtures": len(exs), "seconds": seconds, "seed": seed,
            "split": "val", "bytes": out.stat().st_size}
