"""avedge: edge runtime for audio-visual speech models."""
