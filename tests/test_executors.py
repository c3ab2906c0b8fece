"""The build as datatrove pipelines: the local executor with 2 workers and a Ray cluster on 127.0.0.1 (a worker
killed mid-stage, its task retried) give the one-process tables; the two routes resume each other's work through
the shared shard caches; the Slurm job arrays are submitted with their resources and dependencies."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from builds import assert_same_dataset, small_config, writers

from hf_entropylong import build

pytestmark = pytest.mark.slow
STAGES = ("entropy", "retrieval", "verify", "units")


def shard_files(cache: Path) -> dict[str, float]:
    """Every stage shard cache, with the time it was written."""
    return {path.name: path.stat().st_mtime_ns for stage in STAGES for path in cache.glob(f"{stage}-*.arrow")}


def completions(cache: Path, pipeline: str) -> list[str]:
    """The datatrove tasks of `pipeline` marked completed (one folder per stage keys and task count)."""
    return sorted(path.name for path in cache.glob(f"datatrove/*/{pipeline}-*/completions/*"))


def test_local_executor_with_two_workers_builds_the_one_process_tables(docs_file, demo_build, tmp_path):
    reference_dir, _ = demo_build
    cache = tmp_path / "cache"
    config = small_config(
        docs_file, tmp_path / "local", cache_dir=str(cache), executor="local", executor_workers=2
    )
    assert build(config) is None  # the counts are in stats.json
    assert_same_dataset(tmp_path / "local", reference_dir)
    # One task per root shard (3 of 3 roots each), each computing its own shard through every stage; the corpus
    # embedded by one task and the index written once.
    for stage in STAGES:
        assert writers(cache, stage) == {0: 0, 1: 1, 2: 2}, stage
    assert completions(cache, "roots") == ["00000", "00001", "00002"]
    assert completions(cache, "embed") == completions(cache, "index") == ["00000"]
    assert len(list(cache.glob("index-*.faiss"))) == 1
    # The one-process route finds every shard the datatrove tasks wrote: it computes nothing and gives the tables.
    before = shard_files(cache)
    build(small_config(docs_file, tmp_path / "ranks", cache_dir=str(cache)))
    assert shard_files(cache) == before
    assert_same_dataset(tmp_path / "ranks", reference_dir)


def test_datatrove_tasks_resume_the_work_of_ranks(docs_file, demo_build, tmp_path):
    reference_dir, _ = demo_build
    cache = tmp_path / "cache"
    shutil.copytree(
        reference_dir / ".cache", cache
    )  # every shard and the index, computed by the one-process build
    before = shard_files(cache)
    build(small_config(docs_file, tmp_path / "out", cache_dir=str(cache), executor="local"))
    assert shard_files(cache) == before
    assert set(writers(cache, "verify").values()) == {0}  # as the reference's rank 0 wrote them
    assert_same_dataset(tmp_path / "out", reference_dir)


def test_ray_cluster_retries_a_task_whose_worker_was_killed_mid_stage(
    docs_file, demo_build, tmp_path, monkeypatch
):
    # Every node on 127.0.0.1, the driver included (Ray otherwise swaps the loopback address for the machine's).
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = pytest.importorskip("ray")
    psutil = pytest.importorskip("psutil")
    from ray.cluster_utils import Cluster

    reference_dir, _ = demo_build
    cache = tmp_path / "cache"
    nodes = {"node_ip_address": "127.0.0.1", "object_store_memory": 80 * 2**20, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, **nodes})  # the head runs no task
    killed: dict = {}

    def kill_a_task_mid_stage():
        """Once a task has cached a shard's entropy (it is now retrieving or verifying), SIGKILL the Ray worker
        running a task, with its task process."""
        deadline = time.monotonic() + 600
        while not list(cache.glob("entropy-*.arrow.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
        for process in psutil.process_iter(["cmdline"]):
            title = " ".join(process.info["cmdline"] or ())
            parent = process.parent()
            if title.startswith("ray::RankWorker.run_for_rank") and parent and parent.name() == "raylet":
                killed["task"] = [child.pid for child in process.children(recursive=True)]
                killed["done_before"] = completions(cache, "roots")
                for victim in (*process.children(recursive=True), process):
                    victim.send_signal(signal.SIGKILL)
                killed["worker"] = process.pid
                return

    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, **nodes)
        config = small_config(
            docs_file,
            tmp_path / "ray",
            cache_dir=str(cache),
            executor="ray",
            ray_address=cluster.address,
            cpus_per_task=1,
            mem_per_cpu_gb=1,
            gpus_per_task=1,
        )
        with pytest.raises(
            ValueError, match="the Ray cluster has 0 GPUs and each task asks for 1: lower --gpus_"
        ):
            build(config)  # a task the cluster can never place is refused, not left waiting
        killer = threading.Thread(target=kill_a_task_mid_stage, daemon=True)
        killer.start()
        build(dataclasses.replace(config, gpus_per_task=0))
        killer.join(timeout=5)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert killed.get("worker") and killed["task"], "no task was running when a shard's entropy was cached"
    assert len(killed["done_before"]) < 3  # the killed task had not completed
    assert completions(cache, "roots") == ["00000", "00001", "00002"]  # its retry did
    assert_same_dataset(tmp_path / "ray", reference_dir)


FAKE_SBATCH = """#!{python}
import json, sys
log = {log!r}
with open(log, "a") as handle:
    count = sum(1 for _ in open(log))
    handle.write(json.dumps({{"args": sys.argv[1:-1], "script": open(sys.argv[-1]).read()}}) + "\\n")
print(f"Submitted batch job {{1000 + count}}")
"""


def test_slurm_job_arrays_ask_for_their_resources_and_depend_on_each_other(docs_file, tmp_path, monkeypatch):
    dill = pytest.importorskip("dill")
    bin_dir, log = tmp_path / "bin", tmp_path / "sbatch.jsonl"
    bin_dir.mkdir()
    log.touch()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH.format(python=sys.executable, log=str(log)))
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = small_config(
        docs_file,
        tmp_path / "out",
        executor="slurm",
        slurm_partition="gpu",
        slurm_cpu_partition="cpu",
        slurm_time="02:00:00",
        executor_workers=2,
        cpus_per_task=6,
        mem_per_cpu_gb=10,
    )
    build(config)
    submitted = [json.loads(line) for line in log.read_text().splitlines()]
    jobs = {}  # pipeline -> (job id, sbatch arguments, script); datatrove's stats merges are the other jobs
    for number, job in enumerate(submitted):
        directives = dict(
            line.removeprefix("#SBATCH --").partition("=")[::2]
            for line in job["script"].splitlines()
            if line.startswith("#SBATCH")
        )
        if "merge_stats" not in job["script"]:
            jobs[directives["job-name"].removeprefix("hf_entropylong-")] = (
                1000 + number,
                job["args"],
                directives,
            )
    assert list(jobs) == ["embed", "index", "roots", "publish"]  # submitted in the order they run
    for name, (_, _, directives) in jobs.items():
        on_gpu = name in ("embed", "roots")
        assert directives["partition"] == ("gpu" if on_gpu else "cpu"), name
        assert directives.get("gpus") == ("1" if on_gpu else None), name
        assert (directives["cpus-per-task"], directives["mem-per-cpu"], directives["time"]) == (
            "6",
            "10G",
            "02:00:00",
        )
        assert directives["array"] == ("0-2%2" if name == "roots" else "0-0%2"), name  # a task per root shard
    previous = None
    for name, (_, args, _) in jobs.items():
        dependencies = [arg for arg in args if arg.startswith("--dependency=")]
        assert dependencies == ([f"--dependency=afterok:{jobs[previous][0]}"] if previous else []), name
        previous = name
    script = submitted[0]["script"]
    assert f"source {sys.prefix}/bin/activate" in script and "launch_pickled_pipeline" in script
    # What each array task unpickles: the step of its pipeline with the build's settings.
    pickled = next((tmp_path / "out" / ".cache" / "datatrove").glob("*/roots-3/executor.pik"))
    executor = dill.loads(pickled.read_bytes())
    assert type(executor.pipeline[0]).__name__ == "RunRootShards" and executor.pipeline[0].config == config
    assert not (tmp_path / "out" / "README.md").exists()  # nothing ran here


def test_slurm_without_a_partition_is_refused():
    with pytest.raises(ValueError, match="--executor slurm needs --slurm_partition"):
        small_config("docs.jsonl", "out", executor="slurm")


def _slurm_partition() -> str | None:
    """The default partition of a Slurm cluster this machine can submit to (None: no Slurm answers)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return None
    done = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30)
    partitions = done.stdout.split() if done.returncode == 0 else []
    return next((p.rstrip("*") for p in partitions if p.endswith("*")), partitions[0] if partitions else None)


@pytest.mark.skipif(
    _slurm_partition() is None, reason="no Slurm cluster answers (tests/single_machine_slurm.sh)"
)
def test_slurm_cluster_builds_the_one_process_tables(docs_file, demo_build, tmp_path):
    reference_dir, _ = demo_build
    output_dir = tmp_path / "slurm"
    partition = _slurm_partition()
    settings = dict(slurm_partition=partition, gpus_per_task=0, cpus_per_task=1, mem_per_cpu_gb=2)
    build(small_config(docs_file, output_dir, executor="slurm", slurm_time="00:30:00", **settings))
    deadline = time.monotonic() + 900
    while (
        time.monotonic() < deadline
        and subprocess.run(
            [
                "squeue",
                "-h",
                "-n",
                ",".join(f"hf_entropylong-{p}" for p in ("embed", "index", "roots", "publish")),
            ],
            capture_output=True,
            text=True,
        ).stdout.strip()
    ):
        time.sleep(2)
    assert_same_dataset(output_dir, reference_dir)
    assert completions(output_dir / ".cache", "roots") == ["00000", "00001", "00002"]


def test_local_workers_each_take_a_gpu_no_other_holds(tmp_path, monkeypatch):
    import torch

    from hf_entropylong.builder import pipelines

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)

    def new_worker():
        pipelines._local_gpu.cache_clear()  # what a fresh worker process starts with
        return pipelines._local_gpu(str(tmp_path))

    held = [new_worker(), new_worker()]
    assert [device for device, _ in held] == ["cuda:0", "cuda:1"]
    with pytest.raises(RuntimeError, match="all 2 GPUs of this machine are held by other workers"):
        new_worker()
    held[0][1].release()  # that worker ended
    assert new_worker()[0] == "cuda:0"
    pipelines._local_gpu.cache_clear()
    with pytest.raises(ValueError, match="--executor_workers 3 is more than this machine's 2 GPUs"):
        pipelines.local_workers(small_config("docs.jsonl", "out", executor="local", executor_workers=3))
