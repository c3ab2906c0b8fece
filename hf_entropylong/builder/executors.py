"""Where the build runs (`executor`): this process and its launcher's ranks, or datatrove tasks on this machine's
processes (`local`), Slurm job arrays (`slurm`) or a Ray cluster (`ray`).

`ranks` (the default) is `runner.build`: one process, or every rank of a torchrun / accelerate launch, living from
the first stage to the last. The other executors run the same work as four chained datatrove pipelines (embed the
corpus, build the index, the root shards through every stage, pack and publish: `pipelines.py`), each task done
once and retried alone. Their tasks read and write the caches the ranks do (named by shard and stage key, never by
task or rank), so a datatrove build and a torchrun build resume each other's work and give the same tables.

Retries: Ray resubmits a task whose worker died (up to 3 times, datatrove's `RayPipelineExecutor`); a task that
raised, and any task of the local executor or Slurm that did not finish, is run again by the same command (the
completed ones are skipped). `local` and `ray` run the pipelines here, one after the other, and stop with the
failed tasks named; `slurm` submits one job array per pipeline, each depending on the one before (afterok), and
returns.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..publish.counts import BuildCounts
from ..publish.writer import claim_output_dir
from . import runner
from .config import BuildConfig


def _connect_ray(config: BuildConfig) -> bool:
    """Join the Ray cluster (True when this call connected); refuse a task size the cluster can never place."""
    import ray

    connected = not ray.is_initialized()
    if connected:
        ray.init(address=config.ray_address, log_to_driver=False)
    cluster = ray.cluster_resources()
    for resource, need in (("CPU", config.cpus_per_task), ("GPU", config.gpus_per_task)):
        if need and cluster.get(resource, 0) < need:
            if connected:
                ray.shutdown()
            raise ValueError(
                f"the Ray cluster has {cluster.get(resource, 0):g} {resource}s and each task asks for {need}: "
                f"lower --{resource.lower()}s_per_task{' (0: every task on CPUs)' if resource == 'GPU' else ''}."
            )
    return connected


def build_on_executor(config: BuildConfig) -> None:
    """Run the build as datatrove pipelines on `config.executor` (local, ray: until published; slurm: submit the job
    arrays and return).

    Raises:
        RuntimeError: tasks of a pipeline did not complete (their logs are named; the same command retries them).
    """
    from . import pipelines  # needs the [scale] extra

    claim_output_dir(
        Path(config.output_dir).resolve(), config.overwrite_output_dir
    )  # a bad folder before any work
    executors = pipelines.make_executors(config)
    if config.executor == "slurm":
        list(executors.values())[
            -1
        ].run()  # submits every pipeline, each job array depending on the one before
        jobs = ", ".join(f"{name} {executor.job_id}" for name, executor in executors.items())
        print(f"Submitted the build's Slurm job arrays: {jobs}.", file=sys.stderr)
        return
    connected = config.executor == "ray" and _connect_ray(config)
    try:
        for name, executor in executors.items():
            clock = time.perf_counter()
            executor.run()
            left = executor.get_incomplete_ranks(skip_completed=True)
            folder = executor.logging_dir.path
            if left:
                raise RuntimeError(
                    f"{len(left)} of {executor.world_size} {name} tasks did not complete (tasks {left[:10]}; their "
                    f"logs: {folder}/logs/): run the same command again to retry them."
                )
            seconds = time.perf_counter() - clock
            print(f"{name}: {executor.world_size} tasks done in {seconds:.0f} s ({folder}).", file=sys.stderr)
    finally:
        if connected:
            import ray

            ray.shutdown()


def build(config: BuildConfig) -> BuildCounts | None:
    """Run the build where `config.executor` says: `runner.build` for ranks (the main process returns the counts),
    else the datatrove pipelines (`build_on_executor`; None: the counts are in `<output_dir>/stats.json`)."""
    if config.executor == "ranks":
        return runner.build(config)
    build_on_executor(config)
    return None


def main(argv: list[str] | None = None) -> BuildCounts | None:
    """`hf-entropylong build`: `runner.main` for ranks, else the datatrove pipelines."""
    from trl import TrlParser

    argv = sys.argv[1:] if argv is None else argv
    (config,) = TrlParser((BuildConfig,)).parse_args_and_config(args=argv)
    if config.executor == "ranks":
        return runner.main(argv)
    build_on_executor(config)
    if config.executor != "slurm":
        print(f"Published into {config.output_dir} (the counts: its stats.json).", file=sys.stderr)
    return None
