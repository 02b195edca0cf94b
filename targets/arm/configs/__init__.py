"""Vela system configs (.ini data, no code). A package so that the wheel ships them:
pyproject's package-data pattern "*.ini" only matches files in package folders."""
