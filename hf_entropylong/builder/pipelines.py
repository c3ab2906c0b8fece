"""The build's work as datatrove pipeline steps, and the datatrove executors that run them (`executors.py` drives
them; this module needs the `[scale]` extra).

Four pipelines, each chained to the one before it (`depends`):

1. **embed** (GPU; a task per corpus shard of `index_shard_size` rows): task r embeds the shards whose number is r
   modulo the task count, of every index the method searches, into the embedding caches the ranks write.
2. **index** (CPU, one task; GPU with `index_on_gpu`): trains, fills and writes each index from those caches.
3. **roots** (GPU; a task per root shard of `shard_size` roots): task r runs the root shards whose number is r
   modulo the task count through every stage (`runner.run_shard`).
4. **publish** (CPU, one task): the one-process build over the finished caches (`runner.build`): it finds every
   index and shard cached, then packs, counts and publishes.

Each pipeline's datatrove folder (logs, stats, completions) is `<logging dir>/<hash of the stage keys>/<pipeline>-
<tasks>`: a changed setting or task count never skips work that another one completed.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch
from datasets.fingerprint import Hasher
from datatrove.executor import LocalPipelineExecutor, RayPipelineExecutor, SlurmPipelineExecutor
from datatrove.pipeline.base import PipelineStep
from filelock import FileLock, Timeout

from ..index.corpus_index import num_corpus_shards
from ..index.gpu_placement import this_node
from . import runner
from .config import BuildConfig

GPU_PIPELINES = ("embed", "roots")


@functools.cache
def _local_gpu(lock_dir: str) -> tuple[str, FileLock] | None:
    """A GPU of this machine that no other worker process holds, with its lock (held while this process lives: the
    cache keeps it); None without GPUs."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    Path(lock_dir).mkdir(parents=True, exist_ok=True)
    for device in range(count):
        lock = FileLock(Path(lock_dir) / f"gpu-{os.uname().nodename}-{device}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        return f"cuda:{device}", lock
    if count:
        raise RuntimeError(
            f"all {count} GPUs of this machine are held by other workers: lower --executor_workers."
        )
    return None


def task_device(config: BuildConfig, workers: int) -> str | None:
    """The device of a task: on Slurm and Ray the GPU they gave it; on the local executor with several workers, a GPU
    of the machine that no other worker holds (or, on a CPU machine, an equal share of its threads); else the
    process's default."""
    if config.executor == "local" and workers > 1:
        gpu = _local_gpu(str(runner.stage_cache_dir(config) / "datatrove"))
        if gpu is None:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
        return gpu and gpu[0]
    return "cuda" if torch.cuda.is_available() else None


class BuildTask(PipelineStep):
    """A datatrove step that runs part of a build (`work`) with the build's settings; `workers` is how many tasks
    of its pipeline run at once on a machine (the local executor)."""

    type = "hf_entropylong"

    def __init__(self, config: BuildConfig, workers: int = 1):
        super().__init__()
        self.config, self.workers = config, workers

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        self.work(rank, world_size, task_device(self.config, self.workers))
        return data

    def work(self, rank: int, world_size: int, device: str | None) -> None:
        raise NotImplementedError


class EmbedCorpus(BuildTask):
    name = "embed corpus shards"

    def work(self, rank: int, world_size: int, device: str | None) -> None:
        *_, inputs = runner.load_inputs(self.config, device)
        for name in runner.searched_indexes(self.config.method):
            if not inputs.index_path(name).exists():
                inputs.check_index_factory()
                inputs.embed_rows(name, rank, world_size)


class BuildIndex(BuildTask):
    name = "build the index"

    def work(self, rank: int, world_size: int, device: str | None) -> None:
        *_, inputs = runner.load_inputs(self.config, device)
        for name in runner.searched_indexes(self.config.method):
            inputs.build_index(name)


class RunRootShards(BuildTask):
    name = "root shards through every stage"

    def work(self, rank: int, world_size: int, device: str | None) -> None:
        roots, _, _, inputs = runner.load_inputs(self.config, device)
        if self.config.index_on_gpu and runner.searched_indexes(self.config.method):
            inputs.node = this_node()  # the task is its node's only rank: a copy, or shards over its GPUs
            inputs.placement = inputs.plan_index_placement(inputs.node)
        timings: dict[str, float] = {}
        shards = range(rank, -(-len(roots) // self.config.shard_size), world_size)
        for shard in shards:
            runner.run_shard(roots, shard, inputs.keys, self.config, inputs, timings, rank)
        self.stat_update("root_shards", value=len(shards), unit="task")
        for stage, seconds in timings.items():
            self.stat_update(f"{stage}_seconds", value=round(seconds, 1), unit="task")


class Publish(BuildTask):
    name = "pack and publish"

    def work(self, rank: int, world_size: int, device: str | None) -> None:
        counts = runner.build(replace(self.config, executor="ranks"))
        self.stat_update("sequences", value=counts.sequences if counts else 0, unit="task")


STEPS = {"embed": EmbedCorpus, "index": BuildIndex, "roots": RunRootShards, "publish": Publish}


def pipeline_tasks(config: BuildConfig) -> dict[str, tuple[int, Path]]:
    """Each pipeline to run (embed and index only when the method searches an index): its task count and folder."""
    roots, _, _, inputs = runner.load_inputs(config)
    root_shards = -(-len(roots) // config.shard_size)
    corpus_shards = num_corpus_shards(inputs.corpus, config.index_shard_size)
    tasks = {"roots": min(config.executor_tasks or root_shards, root_shards), "publish": 1}
    if runner.searched_indexes(config.method):
        tasks = {"embed": min(config.executor_tasks or corpus_shards, corpus_shards), "index": 1, **tasks}
    logs = Path(config.executor_logging_dir or runner.stage_cache_dir(config) / "datatrove").resolve()
    folder = logs / Hasher.hash(sorted(inputs.keys.items()))[:16]
    return {name: (count, folder / f"{name}-{count}") for name, count in tasks.items()}


def local_workers(config: BuildConfig) -> int:
    """Worker processes of the local executor: `executor_workers`, else one per GPU, else 1."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    workers = config.executor_workers or max(1, gpus)
    if gpus and workers > gpus:
        raise ValueError(
            f"--executor_workers {workers} is more than this machine's {gpus} GPUs: give at most {gpus}."
        )
    return workers


def make_executors(config: BuildConfig) -> dict[str, object]:
    """The datatrove executor of each pipeline to run, in order, each depending on the one before."""
    executors, previous = {}, None
    for name, (tasks, folder) in pipeline_tasks(config).items():
        uses_gpu = name in GPU_PIPELINES or (name == "index" and config.index_on_gpu)
        workers = min(local_workers(config), tasks) if config.executor == "local" else 1
        common = dict(
            pipeline=[STEPS[name](config, workers)],
            tasks=tasks,
            logging_dir=str(folder),
            depends=previous,
            skip_completed=name != "publish",  # publishing always runs (into this command's output_dir)
        )
        previous = executors[name] = _executor(config, name, uses_gpu, workers, common)
    return executors


def _executor(config: BuildConfig, name: str, uses_gpu: bool, workers: int, common: dict):
    """Pipeline `name` on `config.executor`: Slurm and Ray tasks ask for GPUs only where `uses_gpu`."""
    if config.executor == "local":
        return LocalPipelineExecutor(workers=workers, **common)
    resources = dict(
        cpus_per_task=config.cpus_per_task,
        mem_per_cpu_gb=config.mem_per_cpu_gb,
        gpus_per_task=config.gpus_per_task if uses_gpu else 0,
    )
    if config.executor == "ray":
        return RayPipelineExecutor(workers=config.executor_workers or -1, **resources, **common)
    in_venv = sys.prefix != sys.base_prefix
    return SlurmPipelineExecutor(
        workers=config.executor_workers or -1,
        time=config.slurm_time,
        partition=config.slurm_partition
        if uses_gpu
        else config.slurm_cpu_partition or config.slurm_partition,
        job_name=f"hf_entropylong-{name}",
        qos=config.slurm_qos,
        env_command=config.slurm_env_command or (f"source {sys.prefix}/bin/activate" if in_venv else None),
        **resources,
        **common,
    )
