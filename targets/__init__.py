"""avedge.targets."""
