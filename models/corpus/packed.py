"""A voice bank packed small, to travel to a machine that trains but cannot build one.

    python -m avedge.models.corpus.packed pack BANK_DIR FILE.npz [--max-mib 32]
    python -m avedge.models.corpus.packed unpack FILE.npz DIR    # -> DIR/bank, DIR/rirs.npz

A GPU machine gets the working tree plus carried files, 64 MiB in all, and can install
nothing: no synthesizer, no pyroomacoustics. So the pack holds

- the audio as 8-bit mu-law (G.711's curve: ~38 dB SNR on speech, far below the 0-15 dB
  noise every training mixture adds), half of the bank's int16;
- as many utterances per voice as fit `max_mib` (every voice kept, the voices with many
  utterances capped first: speaker variety is what the extractor lacks, see mixtures.py);
- the room impulse responses the mixtures reverberate with, computed here
  (augment.rir_bank needs pyroomacoustics); after unpacking, AVEDGE_RIRS names that
  file and `packed_rirs` serves it to augment.rir_bank, in worker processes too.

Unpacked, it is an ordinary bank (voices/<slug>.npy int16 + .json, bank.json).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from avedge.runtime.errors import AvedgeError
from avedge.runtime.fsutil import atomic_path

MU = 255.0
RIRS_ENV = "AVEDGE_RIRS"


def mulaw_encode(pcm: np.ndarray) -> np.ndarray:
    """int16 PCM -> uint8 mu-law codes."""
    x = pcm.astype(np.float32) / 32767.0
    y = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    return np.round((y + 1.0) * 127.5).astype(np.uint8)


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    """uint8 mu-law codes -> int16 PCM."""
    y = codes.astype(np.float32) / 127.5 - 1.0
    x = np.sign(y) * np.expm1(np.abs(y) * np.log1p(MU)) / MU
    return np.clip(np.round(x * 32767.0), -32767, 32767).astype(np.int16)


def _cap_per_voice(lengths: dict[str, list[int]], budget: int) -> int:
    """The largest number of utterances per voice whose audio fits `budget` bytes."""
    most = max(len(v) for v in lengths.values())
    best = 0
    for cap in range(1, most + 1):
        if sum(sum(v[:cap]) for v in lengths.values()) > budget:
            break
        best = cap
    return best


def pack_bank(bank_dir: str | Path, out: str | Path, max_mib: float = 32.0,
              seeds: tuple[int, ...] = (0,)) -> dict:
    """Write the pack (see the module docstring) -> what it holds."""
    from avedge.models.corpus import augment
    from avedge.models.corpus.voicebank import open_bank

    bank = open_bank(bank_dir)
    rirs = {s: augment.rir_bank(s) for s in seeds}
    rir_bytes = sum(h.nbytes // 2 for hs in rirs.values() for h in hs)  # stored float16
    budget = int(max_mib * 2**20) - rir_bytes - 2**20  # 1 MiB for the utterances' json
    lengths = {v: [u.n for u in utts] for v, utts in bank.by_voice.items()}
    cap = _cap_per_voice(lengths, budget)
    if cap < 2:
        raise AvedgeError(f"--max-mib {max_mib}: two utterances of each of the bank's "
                          f"{len(lengths)} voices do not fit; raise it")
    arrays: dict[str, np.ndarray] = {}
    for vid, utts in bank.by_voice.items():
        meta_path = Path(bank.root) / "voices" / f"{bank._slug[vid]}.json"
        meta = json.loads(meta_path.read_text())
        kept, offset, chunks = [], 0, []
        for u, m in zip(utts[:cap], meta["utterances"]):
            pcm = np.clip(np.round(bank.audio(u) * 32767), -32767, 32767).astype(np.int16)
            chunks.append(pcm)
            kept.append({**m, "offset": offset})
            offset += len(pcm)
        key = bank._slug[vid]
        arrays[f"audio/{key}"] = mulaw_encode(np.concatenate(chunks))
        arrays[f"meta/{key}"] = np.frombuffer(json.dumps({**meta, "utterances": kept}).encode(),
                                              np.uint8)
    for s, hs in rirs.items():
        arrays[f"rirs/{s}"] = _pad_rows(hs)
        arrays[f"rir_lengths/{s}"] = np.array([len(h) for h in hs])
    info = {**bank.info(), "packed": {"from": str(bank.root), "utterances_per_voice": cap,
                                      "codec": "mu-law 8 bit", "rir_seeds": list(seeds)}}
    arrays["bank.json"] = np.frombuffer(json.dumps(info).encode(), np.uint8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        np.savez_compressed(tmp, **arrays)
    return {"file": str(out), "mib": round(out.stat().st_size / 2**20, 2),
            "voices": len(lengths), "utterances_per_voice": cap,
            "utterances": sum(min(cap, len(v)) for v in lengths.values()),
            "audio_hours": round(sum(sum(v[:cap]) for v in lengths.values()) / 16000 / 3600, 2),
            "rir_seeds": list(seeds), "rir_mib": round(rir_bytes / 2**20, 3)}


def _pad_rows(hs) -> np.ndarray:
    out = np.zeros((len(hs), max(len(h) for h in hs)), np.float16)
    for i, h in enumerate(hs):
        out[i, : len(h)] = h
    return out


def unpack_bank(pack: str | Path, out_dir: str | Path) -> dict:
    """Write the pack out as a bank (out_dir/bank) and its rooms (out_dir/rirs.npz)."""
    pack, out_dir = Path(pack), Path(out_dir)
    if not pack.is_file():
        raise AvedgeError(f"no packed bank at {str(pack)!r}; make one with tools/pack_bank.py")
    vdir = out_dir / "bank" / "voices"
    vdir.mkdir(parents=True, exist_ok=True)
    with np.load(pack) as z:
        for name in z.files:
            kind, _, key = name.partition("/")
            if kind == "audio":
                np.save(vdir / f"{key}.npy", mulaw_decode(z[name]))
            elif kind == "meta":
                (vdir / f"{key}.json").write_bytes(z[name].tobytes())
        (out_dir / "bank" / "bank.json").write_bytes(z["bank.json"].tobytes())
        rirs = {k: z[k] for k in z.files if k.startswith(("rirs/", "rir_lengths/"))}
    np.savez(out_dir / "rirs.npz", **{k.replace("/", "_"): v for k, v in rirs.items()})
    return {"bank": str(out_dir / "bank"), "rirs": str(out_dir / "rirs.npz")}


def packed_rirs(seed: int) -> tuple[np.ndarray, ...] | None:
    """The rooms of `seed` from the file AVEDGE_RIRS names (an unpacked pack), or None."""
    path = os.environ.get(RIRS_ENV)
    if not path:
        return None
    with np.load(path) as z:
        if f"rirs_{seed}" not in z.files:
            raise AvedgeError(f"{RIRS_ENV}={path} has no rooms for seed {seed} (packed: "
                              f"{sorted(k[5:] for k in z.files if k.startswith('rirs_'))}); "
                              f"pack with --seeds {seed}")
        rows, lengths = z[f"rirs_{seed}"], z[f"rir_lengths_{seed}"]
    return tuple(rows[i, :n].astype(np.float32) for i, n in enumerate(lengths))


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m avedge.models.corpus.packed",
                                description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    a = sub.add_parser("pack", help="pack a voice bank")
    a.add_argument("bank")
    a.add_argument("out")
    a.add_argument("--max-mib", type=float, default=32.0, help="size budget (default 32)")
    a.add_argument("--seeds", default="0", help="training seeds to pack rooms for (0,1,...)")
    b = sub.add_parser("unpack", help="unpack into DIR/bank and DIR/rirs.npz")
    b.add_argument("pack")
    b.add_argument("out_dir")
    args = p.parse_args(argv)
    try:
        if args.verb == "pack":
            seeds = tuple(int(s) for s in args.seeds.split(","))
            res = pack_bank(args.bank, args.out, args.max_mib, seeds)
        else:
            res = unpack_bank(args.pack, args.out_dir)
    except (AvedgeError, ValueError) as exc:
        print(f"packed {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
