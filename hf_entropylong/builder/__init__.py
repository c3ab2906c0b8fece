"""The build: settings (`config`), inputs and cache keys (`inputs`), and the runner (`runner`: shards, ranks, the
publish flow). `from hf_entropylong.builder import BuildConfig, build, demo_config`."""

from .config import BuildConfig, demo_config
from .runner import NothingToPackError, build, main

__all__ = ["BuildConfig", "NothingToPackError", "build", "demo_config", "main"]
