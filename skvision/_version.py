"""The package version (pyproject.toml states the same; tests/test_packaging.py checks)."""

__version__ = "0.1.0"
