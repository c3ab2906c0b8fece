"""The package version (read by setup.cfg, the CLI and every cache key)."""

__version__ = "0.1.0"
