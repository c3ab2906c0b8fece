"""The build: settings (`config`), inputs and cache keys (`inputs`), the runner (`runner`: shards, ranks, the
publish flow) and where it runs (`executors`: the launcher's ranks, or datatrove tasks of `pipelines` on this
machine, Slurm or Ray). `from hf_entropylong.builder import BuildConfig, build, demo_config`."""

from .config import BuildConfig, demo_config
from .executors import build, main
from .runner import NothingToPackError

__all__ = ["BuildConfig", "NothingToPackError", "build", "demo_config", "main"]
