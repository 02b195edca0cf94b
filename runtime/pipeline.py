"""Pipeline: a composite artifact — several graphs exported together (e.g. a speaker
encoder run once per enrollment, and a streaming extractor run per chunk).

    >>> from avedge.runtime import load
    >>> pipe = load("artifacts/speech-extractor-hearable")   # doctest: +SKIP
    >>> emb = pipe["speaker_encoder"].run(enrollment=clip)["embedding"]   # doctest: +SKIP
    >>> stream = pipe["extractor"].stream(conditions={"speaker": emb})    # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from avedge.runtime.errors import UnknownNameError


class Pipeline:
    """`spec` is the typed manifest (runtime/manifest.PipelineManifest), `manifest` its JSON."""

    def __init__(self, path: Path, spec, sessions: dict):
        self.path = Path(path)
        self.spec = spec
        self.manifest = spec.to_json()
        self.sessions = sessions

    @property
    def components(self) -> list[str]:
        return list(self.sessions)

    @property
    def backend(self) -> str:
        return ",".join(sorted({s.backend for s in self.sessions.values()}))

    def __getitem__(self, name: str):
        if name not in self.sessions:
            raise UnknownNameError("pipeline component", name, self.sessions)
        return self.sessions[name]

    def __repr__(self) -> str:
        return f"Pipeline({str(self.path)!r}, components={self.components})"
