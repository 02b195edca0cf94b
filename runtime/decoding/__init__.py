"""Turning a model's per-frame scores into text (CTC greedy and beam search)."""

from avedge.runtime.decoding.ctc import Decoded, beam, greedy

__all__ = ["Decoded", "beam", "greedy"]
