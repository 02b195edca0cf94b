"""avedge.runtime.backends."""
