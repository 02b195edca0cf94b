"""manifest.json: the schema of an artifact directory, its validation, and its integrity check.

The dataclasses below are the one place where manifest keys are named: exporters build a
`ModelManifest` / `PipelineManifest` and write `to_json()`; readers call `validate()` (or
`open_manifest(dir)`) and get the typed object back, or an `ArtifactError` whose one line
names the key and what is accepted. The JSON stays plain so that a device with only numpy
and a native runtime can read it.

Format version 2 (version 1 artifacts are refused with a request to re-export them):
  - every input and output carries `time_axis`: the axis a stream advances along (an int,
    0-based) or null (state, conditions, a run-once graph). Stream buffers and splits the
    streamed input and output along it (version 1 assumed the last axis).
  - keys a format does not know are refused, so a misspelt or edited key is an error.

Validation is everything that can be checked without reading a model file: types, a
known format version and kind, shapes (non-negative ints, at most MAX_RANK dims and
MAX_ELEMENTS elements), dtypes from DTYPES, sha256 digests, backends this avedge knows,
stream sections that name existing inputs/outputs, and file names that are plain relative
paths which cannot leave the artifact folder (no absolute paths, no `..`, no hidden or
odd characters; symlinks that lead out are refused when the folder is opened).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from avedge.runtime.errors import ArtifactError
from avedge.runtime.fsutil import atomic_write_json

FORMAT_VERSION = 2
MANIFEST_NAME = "manifest.json"
DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool")
RECIPE_SOURCES = ("user", "family", "target")
MAX_RANK = 16
MAX_ELEMENTS = 2**31
MAX_FILE_BYTES = 2**40
MAX_LOOKAHEAD = 2**20  # samples; a stream flushes it chunk by chunk at finish()
MAX_RING_LAG = 2**16  # chunks of history a ring buffer keeps
MAX_MANIFEST_BYTES = 16 * 2**20
_CHUNK = 1 << 20
# One path segment: starts with a letter, digit or underscore (so never "." or ".."),
# then letters, digits and . _ - only.
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}"
_FILE_NAME = re.compile(rf"{_SEGMENT}(/{_SEGMENT}){{0,3}}")
_DIR_NAME = re.compile(_SEGMENT)
_FORMAT = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FILE_RULE = ("a plain relative name of letters, digits and ._- (no leading dot, no "
              "absolute path, no '..', at most 4 levels)")


# A key written only when it has a value (e.g. the Arm figures, on an Arm artifact).
_OMIT_IF_NONE = {"omit_if_none": True}


class _Schema:
    def to_json(self) -> dict:
        return _to_json(self)

    @classmethod
    def new(cls, **keys):
        """Writers' constructor: every key a keyword (JSON values or typed parts), checked
        exactly as a reader will check it; format_version and kind are filled in."""
        data = _to_json(keys)
        if cls in _KIND_OF:
            data = {"format_version": FORMAT_VERSION, "kind": _KIND_OF[cls], **data}
            return validate(data, f"the {_KIND_OF[cls]} manifest being written")
        return _from_json(cls, data, "", _raiser(f"a new {cls.__name__}"))

    def _check(self, where: str, fail) -> None:
        """Cross-field rules beyond the field types; `fail(key, problem, accepted)`."""


@dataclass(frozen=True)
class FileRecord(_Schema):
    sha256: str
    bytes: int
    format: str  # "pte" | "onnx" | "pt2" | "safetensors" | "npz" | "manifest" | ...

    def _check(self, where, fail):
        if not _SHA256.fullmatch(self.sha256):
            fail(f"{where}.sha256", f"is {self.sha256[:80]!r}", "64 lowercase hex digits")
        if not 0 <= self.bytes <= MAX_FILE_BYTES:
            fail(f"{where}.bytes", f"is {self.bytes}", f"0 to {MAX_FILE_BYTES}")
        if not _FORMAT.fullmatch(self.format):
            fail(f"{where}.format", f"is {self.format[:80]!r}",
                 "a lowercase format name such as pte, onnx, npz")


@dataclass(frozen=True)
class TensorSpec(_Schema):
    name: str
    shape: list[int]
    dtype: str
    time_axis: int | None = None  # the axis a stream advances along; null: not streamed

    def _check(self, where, fail):
        if not self.name or len(self.name) > 256:
            fail(f"{where}.name", f"is {self.name[:80]!r}", "a name of 1 to 256 characters")
        if len(self.shape) > MAX_RANK or any(d < 0 for d in self.shape) or math.prod(
                self.shape) > MAX_ELEMENTS or any(d > MAX_ELEMENTS for d in self.shape):
            fail(f"{where}.shape", f"is {str(self.shape)[:80]}",
                 f"a list of at most {MAX_RANK} non-negative ints, at most {MAX_ELEMENTS} "
                 f"elements in all")
        if self.dtype not in DTYPES:
            fail(f"{where}.dtype", f"is {self.dtype[:80]!r}", ", ".join(DTYPES))
        if self.time_axis is not None and not 0 <= self.time_axis < len(self.shape):
            fail(f"{where}.time_axis", f"is {self.time_axis} for shape {self.shape}",
                 f"null or an axis from 0 to {len(self.shape) - 1}")


@dataclass(frozen=True)
class StatePair(_Schema):
    input: str  # fed back each chunk from ...
    output: str  # ... this output of the previous chunk


@dataclass(frozen=True)
class RingSpec(_Schema):
    input: str
    output: str
    taps: list[list[int]]  # [row, lag]: row `row` of `output`, `lag` chunks ago

    def _check(self, where, fail):
        for i, tap in enumerate(self.taps):
            if len(tap) != 2 or tap[0] < 0 or not 1 <= tap[1] <= MAX_RING_LAG:
                fail(f"{where}.taps[{i}]", f"is {tap}", f"[row >= 0, 1 <= lag <= {MAX_RING_LAG}]")


@dataclass(frozen=True)
class StreamSpec(_Schema):
    input: str  # the chunk input; streamed along its time_axis
    output: str  # the streamed output; along its time_axis
    chunk_samples: int
    lookahead_samples: int = 0
    sample_rate: int | None = None
    state: list[StatePair] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)  # inputs held constant per stream
    rings: list[RingSpec] = field(default_factory=list)  # history as ring buffers

    def _check(self, where, fail):
        if not 1 <= self.chunk_samples <= MAX_ELEMENTS:
            fail(f"{where}.chunk_samples", f"is {self.chunk_samples}", f"1 to {MAX_ELEMENTS}")
        if not 0 <= self.lookahead_samples <= MAX_LOOKAHEAD:
            fail(f"{where}.lookahead_samples", f"is {self.lookahead_samples}",
                 f"0 to {MAX_LOOKAHEAD}")
        if self.sample_rate is not None and not 1 <= self.sample_rate <= 10**7:
            fail(f"{where}.sample_rate", f"is {self.sample_rate}", "null or 1 to 10000000")


@dataclass(frozen=True)
class ParityRecord(_Schema):
    backend: str  # the runtime the file was checked in at export
    max_abs_err: float
    rel_err: float


@dataclass(frozen=True)
class RecipeDeviation(_Schema):
    """How far the recipe's module-level compression (pruning, low-rank, weight-only
    quantization) moved the eager module's output on the export's example inputs: what
    the recipe changed, recorded as information (its accuracy cost is the family
    metric's to judge); parity is measured against the compressed module instead."""

    max_abs_err: float
    rel_err: float  # max_abs_err over the uncompressed output's largest magnitude


@dataclass(frozen=True)
class MemoryPlan(_Schema):
    activation_arena_bytes: int
    note: str = ""


@dataclass(frozen=True)
class ComponentRef(_Schema):
    dir: str  # a sub-folder holding the component's own model manifest
    recipe: str
    recipe_source: Literal["user", "family", "target"]
    target: str | None = None

    def _check(self, where, fail):
        if not _DIR_NAME.fullmatch(self.dir):
            fail(f"{where}.dir", f"is {self.dir[:80]!r}",
                 "one plain folder name of letters, digits and ._- (no '/', no leading dot)")


# Keys of the loosely typed Arm sections that `avedge info` / `bench` read, with their kinds.
_NUM = (int, float)
NPU_ESTIMATE_KEYS = {"source": str, "clock_mhz": _NUM, "cycles_per_inference": int,
                     "inference_ms_at_clock": _NUM, "sram_kib": _NUM, "flash_kib": _NUM,
                     "macs": int, "npu_ops": int, "cpu_ops": int, "npu_op_share": _NUM,
                     "ops_on_cpu": list, "accelerator": (str, type(None)),
                     "system_config": (str, type(None)), "memory_mode": (str, type(None))}
TOSA_CHECK_KEYS = {"status": str, "ok": bool, "batches": int, "lsb_limit": _NUM,
                   "max_lsb_diff": (int, float, type(None))}


@dataclass(frozen=True)
class ModelManifest(_Schema):
    """One graph: its model files (one per format), signature and provenance."""

    format_version: int
    kind: Literal["model"]
    family: str
    target: str
    backends: list[str]  # the target's runtimes, preferred first
    recipe: str
    files: dict[str, FileRecord]  # name (relative to the artifact folder) -> record
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    precision: str | None = None
    threads: int | None = None
    recipe_source: Literal["user", "family", "target"] = "user"
    recipe_configs: list[dict] = field(default_factory=list)
    custom_ops: list[str] = field(default_factory=list)  # avedge kernels the graph calls
    quantization: dict[str, dict] = field(default_factory=dict)  # per format: op counts
    stream: StreamSpec | None = None
    token_rates: dict | None = None
    parameters: int = 0
    budgets: dict = field(default_factory=dict)  # the target's budgets and the verdicts
    versions: dict[str, str | None] = field(default_factory=dict)
    created: str = ""
    metric: dict | None = None  # the family metric measured at export, if any
    extra: dict = field(default_factory=dict)
    # Per format: the file run in its runtime against the eager module it was lowered
    # from (the compressed one: a lowering fault, told apart from the recipe's own cost).
    parity: dict[str, ParityRecord] = field(default_factory=dict)
    # The compressed eager module against the uncompressed one; absent when the recipe
    # has no module-level config (the lowering's own int8/fp16 shows in parity).
    recipe_deviation: RecipeDeviation | None = field(default=None, metadata=_OMIT_IF_NONE)
    # Written by particular lowerings only (targets/lowering.py, targets/arm/lower.py).
    memory_plan: MemoryPlan | None = field(default=None, metadata=_OMIT_IF_NONE)
    npu_estimate: dict | None = field(default=None, metadata=_OMIT_IF_NONE)
    tosa_check: dict | None = field(default=None, metadata=_OMIT_IF_NONE)
    cortex_m: dict | None = field(default=None, metadata=_OMIT_IF_NONE)

    def input(self, name: str) -> TensorSpec:
        return next(s for s in self.inputs if s.name == name)

    def output(self, name: str) -> TensorSpec:
        return next(s for s in self.outputs if s.name == name)

    def _check(self, where, fail):
        _check_common(self, fail)
        if not self.files:
            fail("files", "is empty", "at least one model file")
        for kind, specs in (("inputs", self.inputs), ("outputs", self.outputs)):
            names = [s.name for s in specs]
            if len(set(names)) != len(names):
                fail(kind, f"repeats a name ({names})", "unique names")
        for key, value, keys in (("npu_estimate", self.npu_estimate, NPU_ESTIMATE_KEYS),
                                 ("tosa_check", self.tosa_check, TOSA_CHECK_KEYS)):
            if value is not None:
                _require_keys(value, keys, key, fail)
        for key, value in self.budgets.items():
            if not isinstance(value, (int, float, bool, type(None))):
                fail(f"budgets.{key}", f"is {_kind(value)}", "a number, true/false or null")
        if self.stream is not None:
            self._check_stream(self.stream, fail)

    def _check_stream(self, s: StreamSpec, fail):
        ins = {t.name: t for t in self.inputs}
        outs = {t.name: t for t in self.outputs}

        def need(key, name, table, what):
            if name not in table:
                fail(key, f"names {name!r}", f"one of the model's {what}: {', '.join(table)}")
            return table[name]

        chunk = need("stream.input", s.input, ins, "inputs")
        out = need("stream.output", s.output, outs, "outputs")
        for key, spec in (("stream.input", chunk), ("stream.output", out)):
            if spec.time_axis is None:
                fail(key, f"names {spec.name!r}, which has no time_axis",
                     "a streamed tensor with its time_axis set")
        if chunk.shape[chunk.time_axis] != s.chunk_samples:
            fail("stream.chunk_samples", f"is {s.chunk_samples} but {chunk.name!r} has "
                 f"{chunk.shape[chunk.time_axis]} on its time axis", "the two equal")
        for i, p in enumerate(s.state):
            need(f"stream.state[{i}].input", p.input, ins, "inputs")
            need(f"stream.state[{i}].output", p.output, outs, "outputs")
        for i, c in enumerate(s.conditions):
            need(f"stream.conditions[{i}]", c, ins, "inputs")
        for i, r in enumerate(s.rings):
            taps = need(f"stream.rings[{i}].input", r.input, ins, "inputs")
            frames = need(f"stream.rings[{i}].output", r.output, outs, "outputs")
            rows = frames.shape[1] if len(frames.shape) >= 2 else 0
            if (len(taps.shape) < 2 or taps.shape[1] != len(r.taps)
                    or taps.shape[2:] != frames.shape[2:]
                    or any(row >= rows for row, _ in r.taps)):
                fail(f"stream.rings[{i}]", f"has {len(r.taps)} taps for {r.input!r} "
                     f"{taps.shape} from {r.output!r} {frames.shape}",
                     "taps (B, n_taps, *frame) whose rows exist in frames (B, rows, *frame)")


@dataclass(frozen=True)
class PipelineManifest(_Schema):
    """Several graphs exported together; each in its own folder with its own manifest."""

    format_version: int
    kind: Literal["pipeline"]
    family: str | None
    target: str
    backends: list[str]
    recipe: str  # the one recipe all components use, or "per-component"
    components: dict[str, ComponentRef]
    files: dict[str, FileRecord]  # the components' manifests, "<dir>/manifest.json"
    versions: dict[str, str | None] = field(default_factory=dict)
    created: str = ""
    metric: dict | None = None
    extra: dict = field(default_factory=dict)

    def _check(self, where, fail):
        _check_common(self, fail)
        if not self.components:
            fail("components", "is empty", "at least one component")
        for name, comp in self.components.items():
            listed = f"{comp.dir}/{MANIFEST_NAME}"
            if listed not in self.files:
                fail(f"components.{name}.dir", f"is {comp.dir!r} but files has no {listed!r}",
                     "a folder whose manifest.json is listed in files")


Manifest = ModelManifest | PipelineManifest
_KINDS = {"model": ModelManifest, "pipeline": PipelineManifest}
_KIND_OF = {cls: kind for kind, cls in _KINDS.items()}


def _check_common(m, fail) -> None:
    from avedge.runtime.backends import BACKEND_NAMES

    for i, b in enumerate(m.backends):
        if b not in BACKEND_NAMES:
            fail(f"backends[{i}]", f"is {b[:80]!r}", ", ".join(BACKEND_NAMES))
    for name in m.files:
        if not _FILE_NAME.fullmatch(name):
            fail("files", f"lists {name[:80]!r}", _FILE_RULE)


def _require_keys(value: dict, keys: dict, where: str, fail) -> None:
    for key, kinds in keys.items():
        got = value.get(key, ...)
        ok = got is not ... and isinstance(got, kinds) and not (
            isinstance(got, bool) and bool not in (kinds if isinstance(kinds, tuple) else
                                                   (kinds,)))
        if not ok:
            names = [k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,))]
            fail(f"{where}.{key}", "is missing" if got is ... else f"is {_kind(got)}",
                 " or ".join(names))


# ---------------------------------------------------------------- generic (de)serialisation

def validate(data, source: str = MANIFEST_NAME) -> Manifest:
    """A manifest as parsed from JSON -> the typed manifest, or ArtifactError naming the key."""
    fail = _raiser(source)
    if not isinstance(data, dict):
        raise ArtifactError(f"{source}: the manifest is {_kind(data)}; accepted: a JSON object")
    version = data.get("format_version", ...)
    if version is ...:
        fail("format_version", "is missing", f"{FORMAT_VERSION}")
    if version != FORMAT_VERSION:
        if isinstance(version, int) and not isinstance(version, bool) and version < FORMAT_VERSION:
            raise ArtifactError(
                f"{source}: format_version {version} was written by an older avedge; this avedge "
                f"reads version {FORMAT_VERSION}: re-export the artifact (`avedge export ...`)")
        fail("format_version", f"is {_short(version)}",
             f"{FORMAT_VERSION} (a newer format needs a newer avedge)")
    kind = data.get("kind", ...)
    if not isinstance(kind, str) or kind not in _KINDS:  # a list or dict is not hashable
        fail("kind", "is missing" if kind is ... else f"is {_short(kind)}", "model, pipeline")
    return _from_json(_KINDS[kind], data, "", fail)


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _raiser(source: str):
    def fail(key: str, problem: str, accepted: str):
        raise ArtifactError(f"{source}: key {key!r} {problem}; accepted: {accepted}")

    return fail


def _from_json(cls, data, where: str, fail):
    hints = _hints(cls)
    fields = dataclasses.fields(cls)
    known = [f.name for f in fields]
    if not isinstance(data, dict):
        fail(where or "(top level)", f"is {_kind(data)}", f"an object with keys {', '.join(known)}")
    unknown = [k for k in data if k not in known]
    if unknown:
        fail(_join(where, str(unknown[0])), "is not a key of this format",
             f"the keys {', '.join(known)}")
    kwargs = {}
    for f in fields:
        key = _join(where, f.name)
        if f.name in data:
            kwargs[f.name] = _convert(data[f.name], hints[f.name], key, fail)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            fail(key, "is missing", _describe(hints[f.name]))
    obj = cls(**kwargs)
    obj._check(where, fail)
    return obj


def _convert(value, tp, where: str, fail):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            if value is None:
                fail(where, "is null", _describe(tp))
            return _convert(value, inner[0], where, fail)
        for a in inner:  # unions of scalars, e.g. str | None handled above
            if _is_scalar(value, a):
                return value
        fail(where, f"is {_kind(value)}", _describe(tp))
    if origin is Literal:
        if not isinstance(value, str) or value not in args:
            fail(where, f"is {_short(value)}", ", ".join(args))
        return value
    if origin is list or tp is list:
        if not isinstance(value, list):
            fail(where, f"is {_kind(value)}", _describe(tp))
        if not args:
            return value
        return [_convert(v, args[0], f"{where}[{i}]", fail) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            fail(where, f"is {_kind(value)}", _describe(tp))
        if not args:
            return value
        return {k: _convert(v, args[1], f"{where}.{k}", fail) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _from_json(tp, value, where, fail)
    if not _is_scalar(value, tp):
        fail(where, f"is {_kind(value)}", _describe(tp))
    return float(value) if tp is float else value


def _is_scalar(value, tp) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    if tp is str:
        return isinstance(value, str)
    return False


def _describe(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(args)
    if origin is list or tp is list:
        return f"a list of {_describe(args[0])}s" if args else "a list"
    if origin is dict or tp is dict:
        return f"an object of {_describe(args[1])}s" if args else "an object"
    if dataclasses.is_dataclass(tp):
        return "an object with keys " + "/".join(f.name for f in dataclasses.fields(tp))
    return {bool: "true/false", int: "an integer", float: "a finite number",
            str: "a string"}.get(tp, str(tp))


def _kind(value) -> str:
    if value is None:
        return "null"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _to_json(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get("omit_if_none") and getattr(obj, f.name) is None)}
    if isinstance(obj, (list, tuple)):
        return [_to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_json(v) for k, v in obj.items()}
    return obj


# ---------------------------------------------------------------- reading and writing

def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def file_record(path: Path, fmt: str) -> dict:
    """The JSON of a FileRecord for the file at `path`."""
    return FileRecord(sha256=sha256_file(path), bytes=path.stat().st_size,
                      format=fmt).to_json()


def write_manifest(folder: str | Path, manifest: Manifest) -> dict:
    """Write a typed manifest (built with `.new(...)`) atomically; -> its JSON dict."""
    data = manifest.to_json()
    atomic_write_json(Path(folder) / MANIFEST_NAME, data)
    return data


def open_manifest(artifact_dir: str | Path) -> Manifest:
    """The artifact's typed manifest, validated; refused before any model file is read."""
    d = Path(artifact_dir)
    if not d.is_dir():
        raise ArtifactError(f"{d} is not a directory; an artifact is a directory holding "
                            f"{MANIFEST_NAME} and model files (made by `avedge export`)")
    path = d / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(f"{d} has no {MANIFEST_NAME}; is it an artifact made by `avedge export`?")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{path} is {path.stat().st_size} bytes; a manifest is at most "
                            f"{MAX_MANIFEST_BYTES} bytes")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({str(exc)[:120]}); the file is "
                            f"truncated or damaged: re-export the artifact") from exc
    manifest = validate(data, str(path))
    check_paths(d, manifest)
    return manifest


def read_manifest(artifact_dir: str | Path) -> dict:
    """The validated manifest as a JSON dict (for printing and scripts)."""
    return open_manifest(artifact_dir).to_json()


def inside(artifact_dir: str | Path, name: str) -> Path:
    """`artifact_dir / name`, refused if it resolves (through symlinks) outside the folder."""
    root = Path(artifact_dir).resolve()
    path = Path(artifact_dir) / name
    if not path.resolve().is_relative_to(root):
        raise ArtifactError(f"{path} leads outside the artifact folder {root} (a symlink?); "
                            f"accepted: files inside the artifact folder")
    return path


def check_paths(artifact_dir: str | Path, manifest: Manifest) -> None:
    """Every listed file (and component folder) stays inside the folder. Hashes nothing."""
    for name in manifest.files:
        inside(artifact_dir, name)
    for comp in getattr(manifest, "components", {}).values():
        inside(artifact_dir, comp.dir)


def read_verified(artifact_dir: str | Path, name: str, manifest: Manifest) -> bytes:
    """The bytes of one listed file, after checking size and sha256 against the manifest.

    Returning the checked bytes (not a path) means the native runtime loads exactly what
    was verified: the file cannot change between the check and the load.
    """
    rec = manifest.files.get(name)
    if rec is None:
        listed = ", ".join(manifest.files) or "(none)"
        raise ArtifactError(f"{name!r} is not listed in the manifest; files listed: {listed}")
    path = inside(artifact_dir, name)
    if not path.is_file():
        raise ArtifactError(f"{path} is missing (the manifest lists it)")
    size = path.stat().st_size
    if size != rec.bytes:  # before reading: a swapped-in huge file is not read at all
        raise ArtifactError(
            f"{path} is {size} bytes but the manifest says {rec.bytes}: the file is "
            f"truncated or was replaced; re-export the artifact")
    data = path.read_bytes()
    digest = sha256_bytes(data)
    if len(data) != rec.bytes or digest != rec.sha256:
        raise ArtifactError(
            f"{path}: sha256 mismatch (manifest {rec.sha256[:12]}…, file {digest[:12]}…): the "
            f"file was modified or corrupted; refusing to load it. Re-export the artifact")
    return data


def verify_all(artifact_dir: str | Path, manifest: Manifest, skip=()) -> None:
    """Check every listed file (except `skip`, which the caller reads verified itself)."""
    for name, rec in manifest.files.items():
        if name in skip:
            continue
        path = inside(artifact_dir, name)
        if not path.is_file():
            raise ArtifactError(f"{path} is missing (the manifest lists it)")
        if path.stat().st_size != rec.bytes or sha256_file(path) != rec.sha256:
            raise ArtifactError(f"{path} does not match the sha256/size in the manifest: the file "
                                f"was modified, truncated or corrupted; re-export the artifact")
