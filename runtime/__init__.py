"""avedge.runtime."""
