"""avedge.quantize."""
