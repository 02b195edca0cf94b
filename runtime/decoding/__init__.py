"""Turning a model's per-frame scores into text (CTC greedy, beam search, grammar)."""

from avedge.runtime.decoding.ctc import Decoded, beam, constrained, greedy

__all__ = ["Decoded", "beam", "constrained", "greedy"]
