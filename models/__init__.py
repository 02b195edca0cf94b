"""avedge.models."""
