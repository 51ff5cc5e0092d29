"""The package version, in one place: pyproject reads it, and so do both CLIs and the server."""

__version__ = "0.1.0"
