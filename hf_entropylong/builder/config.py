"""The build's settings: `BuildConfig`, the flat union of every settings group, and the embedded demo's.

Each group lives beside the code that reads it (`sources`, `models`, each stage in `stages/`, each method in
`methods/`, the corpus index in `index/`, packing and publishing in `publish/`); `BuildConfig` inherits them all, so
a recipe is one flat YAML and every field is one flag. `RunSettings` (how the build runs) and `ExecutorSettings`
(where its work runs: `builder/executors.py`) live here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import yaml

from ..index.corpus_index import IndexSettings, SearchSettings
from ..index.exclusion import ExclusionSettings
from ..methods import MethodSettings
from ..methods.nextlong import NExtLongSettings
from ..methods.quest import QuestSettings
from ..models import EmbedderSettings, LMSettings
from ..paths import RECIPES_DIR
from ..publish.packing import PackSettings
from ..publish.writer import OutputSettings
from ..settings import require_non_negative, require_positive, setting
from ..sources import CorpusSettings, RootSettings
from ..stages.entropy import EntropySettings
from ..stages.retrieval import RetrievalSettings
from ..stages.units import UnitSettings
from ..stages.verify import VerifySettings

DEMO_RECIPE = RECIPES_DIR / "build" / "demo.yaml"


@dataclass
class RunSettings:
    """How the build runs."""

    output_neutral: ClassVar[tuple[str, ...]] = ("shard_size", "cache_dir", "trust_remote_code")

    seed: int = setting(
        42,
        help="Seed of the root sample, the index training sample, each unit's shuffle and the row shuffle.",
    )
    shard_size: int = setting(256, help="Roots per resumable, cached shard (the unit of work of a rank).")
    cache_dir: str | None = setting(
        None,
        help="Folder of the stage caches and the index (default: <output_dir>/.cache). Builds that share it reuse "
        "each other's index and common stages (e.g. one build per method on the same inputs).",
    )
    trust_remote_code: bool = setting(
        False, help="Run model code from the model's repository (jina-embeddings-v3 needs it)."
    )

    def __post_init__(self):
        require_positive(self, "shard_size")
        require_non_negative(self, "seed")


@dataclass
class ExecutorSettings:
    """Where the build's work runs: this process and the ranks of its launcher, or datatrove tasks."""

    output_neutral: ClassVar[tuple[str, ...]] = (
        "executor",
        "executor_tasks",
        "executor_workers",
        "cpus_per_task",
        "mem_per_cpu_gb",
        "gpus_per_task",
        "slurm_partition",
        "slurm_cpu_partition",
        "slurm_time",
        "slurm_qos",
        "slurm_env_command",
        "ray_address",
        "executor_logging_dir",
    )

    executor: Literal["ranks", "local", "slurm", "ray"] = setting(
        "ranks",
        help="ranks: this process, or every rank of the torchrun / accelerate launch it runs under. local, slurm, "
        "ray: the stages as datatrove tasks on this machine's processes, Slurm job arrays or a Ray cluster (the "
        "[scale] extra); the same shard caches either way.",
    )
    executor_tasks: int | None = setting(
        None,
        help="Tasks of the sharded pipelines (corpus embedding, root shards), each taking the shards whose number is "
        "its own modulo the task count (default: one task per shard, the finest retry).",
    )
    executor_workers: int | None = setting(
        None,
        help="Tasks run at once (default: local, one per GPU, or 1 on a CPU machine; slurm and ray, all of them).",
    )
    cpus_per_task: int = setting(8, help="CPUs of each Slurm or Ray task.")
    mem_per_cpu_gb: int = setting(8, help="Memory of each Slurm or Ray task, in GB per CPU.")
    gpus_per_task: int = setting(
        1,
        help="GPUs of each Slurm or Ray task of the GPU pipelines (corpus embedding, root shards; the index too with "
        "index_on_gpu); indexing and publishing ask for none. 0: every task on CPUs.",
    )
    slurm_partition: str | None = setting(
        None, help="Slurm partition of the GPU pipelines (--executor slurm)."
    )
    slurm_cpu_partition: str | None = setting(
        None, help="Slurm partition of the CPU pipelines (indexing, publishing); default: slurm_partition."
    )
    slurm_time: str = setting("24:00:00", help="Slurm time limit of each task (sbatch --time).")
    slurm_qos: str | None = setting(
        None, help="Slurm quality of service (sbatch --qos; default: the cluster's)."
    )
    slurm_env_command: str | None = setting(
        None,
        help="Shell line each Slurm task runs first (default: activate the Python environment of the submitting "
        "command).",
    )
    ray_address: str | None = setting(
        None, help="Address of the Ray cluster (default: RAY_ADDRESS, else a Ray started on this machine)."
    )
    executor_logging_dir: str | None = setting(
        None,
        help="Folder of datatrove's logs, stats and task completions (default: <cache_dir>/datatrove/); on a "
        "file system every task sees.",
    )

    def __post_init__(self):
        require_positive(self, "executor_tasks", "executor_workers", "cpus_per_task", "mem_per_cpu_gb")
        require_non_negative(self, "gpus_per_task")
        if self.executor == "slurm" and not self.slurm_partition:
            raise ValueError("--executor slurm needs --slurm_partition (the partition of the GPU tasks).")


SETTINGS_GROUPS: tuple[type, ...] = (
    MethodSettings,
    RootSettings,
    CorpusSettings,
    LMSettings,
    EmbedderSettings,
    EntropySettings,
    IndexSettings,
    SearchSettings,
    ExclusionSettings,
    RetrievalSettings,
    VerifySettings,
    UnitSettings,
    PackSettings,
    QuestSettings,
    NExtLongSettings,
    RunSettings,
    ExecutorSettings,
    OutputSettings,
)


@dataclass
class BuildConfig(*reversed(SETTINGS_GROUPS)):
    """Settings of an EntropyLong build: the fields of every settings group, flat (one YAML, one flag each).

    Defaults are the paper's; `recipes/build/` holds complete recipes. Each group lives beside the code that reads
    it: `sources.RootSettings` / `CorpusSettings`, `models.LMSettings` / `EmbedderSettings`, and the settings of
    each stage (`entropy`, `retrieval`, `verify`, `pack`), the run and the output.
    """

    def __post_init__(self):
        for group in SETTINGS_GROUPS:
            validate = vars(group).get("__post_init__")
            if validate is not None:
                validate(self)


def demo_config(**overrides: Any) -> BuildConfig:
    """The embedded-default `BuildConfig` (CPU, offline): the settings of `recipes/build/demo.yaml`, with `overrides`.

    Args:
        **overrides: any `BuildConfig` field, e.g. `output_dir="outputs/demo"`, `num_roots=20`.
    """
    settings = yaml.safe_load(DEMO_RECIPE.read_text(encoding="utf-8"))
    return BuildConfig(**{**settings, **overrides})
