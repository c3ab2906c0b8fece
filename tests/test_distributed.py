"""The build launched on 2 processes (gloo, CPU) gives the 1-process dataset, also after a rank is killed."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from builds import assert_same_dataset, small_config, writers

from hf_entropylong import build
from hf_entropylong.methods import stages_of

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
# Rank 1 misbehaves, the rest of the build runs as launched: `python this.py {die-in-verify|other-top-k} ARGS`.
MISBEHAVING_RANK = """
import dataclasses, os, sys
from hf_entropylong import builder, cli
from hf_entropylong.methods import METHODS

mode, argv = sys.argv[1], sys.argv[2:]
if os.environ["RANK"] == "1" and mode == "die-in-verify":
    def die(*args, **kwargs):
        os._exit(9)
    METHODS["entropylong"] = tuple(
        dataclasses.replace(stage, function=die) if stage.name == "verify" else stage
        for stage in METHODS["entropylong"]
    )
if os.environ["RANK"] == "1" and mode == "other-top-k":
    argv += ["--top_k", "3"]
cli.run(builder.main, argv, "build")
"""


def recipe_for(docs_file, tmp_path: Path, output_dir: Path, **overrides) -> Path:
    recipe = tmp_path / f"{output_dir.name}.yaml"
    config = small_config(docs_file, output_dir, **overrides)
    recipe.write_text(yaml.safe_dump(dataclasses.asdict(config)))
    return recipe


def launch(*command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_ENTROPYLONG_DEBUG": ""}
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=900)


def test_two_processes_build_the_one_process_dataset(docs_file, demo_build, tmp_path):
    reference_dir, _ = demo_build
    output_dir = tmp_path / "two"
    # What `accelerate launch --num_processes 2` runs on GPUs (its CPU multi-process path needs MPI).
    torchrun = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2"]
    recipe = str(recipe_for(docs_file, tmp_path, output_dir))
    done = launch(*torchrun, "-m", "hf_entropylong", "build", "--config", recipe, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_dataset(output_dir, reference_dir)
    # Rank 1 computed shard 1 of 3 in every stage, rank 0 shards 0 and 2; the corpus index was written once.
    cache = output_dir / ".cache"
    for stage in ("entropy", "retrieval", "verify", "units"):
        assert writers(cache, stage) == {0: 0, 1: 1, 2: 0}, stage
    assert len(list(cache.glob("verify-*.arrow"))) == 3 and len(list(cache.glob("index-*.faiss"))) == 1


BASELINES = {
    "noverify": {},
    "concat": {"max_seq_length": 160},
    "quest": {"max_seq_length": 160, "quest_max_keyword_share": 0.5},
    "nextlong": {"max_seq_length": 160, "meta_chunk_chars": 120, "meta_chunk_sentences": True},
}
"""Every method but EntropyLong (tested above), with settings that fill whole rows from the crafted corpus."""


@pytest.mark.parametrize("method", BASELINES)
def test_two_processes_build_every_baseline_as_one_process_does(method, docs_file, tmp_path):
    settings = {"method": method, **BASELINES[method]}
    build(small_config(docs_file, tmp_path / "one", **settings))
    torchrun = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2"]
    recipe = str(recipe_for(docs_file, tmp_path, tmp_path / "two", **settings))
    done = launch(*torchrun, "-m", "hf_entropylong", "build", "--config", recipe, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_dataset(tmp_path / "two", tmp_path / "one")
    first_stage = stages_of(method)[0].name
    assert writers(tmp_path / "two" / ".cache", first_stage) == {0: 0, 1: 1, 2: 0}  # shard 1 on rank 1
    if method == "nextlong":  # the chunk dataset, written once
        assert len(list((tmp_path / "two" / ".cache").glob("chunks-*.arrow"))) == 1


@pytest.mark.parametrize("resume_ranks", [1, 3])
def test_a_killed_rank_resumes_on_any_number_of_ranks(docs_file, demo_build, tmp_path, resume_ranks):
    reference_dir, _ = demo_build
    output_dir = tmp_path / "killed"
    recipe = str(recipe_for(docs_file, tmp_path, output_dir))
    script = tmp_path / "misbehaving_rank.py"
    script.write_text(MISBEHAVING_RANK)
    torchrun = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2"]
    killed = launch(*torchrun, str(script), "die-in-verify", "--config", recipe, cwd=tmp_path)
    assert killed.returncode != 0 and not (output_dir / "README.md").exists()
    assert (
        len(list((output_dir / ".cache").glob("entropy-*.arrow"))) >= 1
    )  # work done before the kill is kept
    cache = output_dir / ".cache"
    verified_before = writers(cache, "verify")
    assert 1 not in verified_before.values()  # rank 1 died in its first verification
    resume = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", str(resume_ranks)]
    resumed = launch(*resume, "-m", "hf_entropylong", "build", "--config", recipe, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_dataset(output_dir, reference_dir)
    # Finished shards are kept as they were; the rest is shared out among the new ranks by shard index.
    verified = writers(cache, "verify")
    assert {shard: verified[shard] for shard in verified_before} == verified_before
    assert all(
        rank == shard % resume_ranks for shard, rank in verified.items() if shard not in verified_before
    )


def test_ranks_launched_with_other_settings_are_refused(docs_file, tmp_path):
    output_dir = tmp_path / "mixed"
    script = tmp_path / "misbehaving_rank.py"
    script.write_text(MISBEHAVING_RANK)
    torchrun = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2"]
    recipe = str(recipe_for(docs_file, tmp_path, output_dir))
    done = launch(*torchrun, str(script), "other-top-k", "--config", recipe, cwd=tmp_path)
    assert done.returncode != 0
    assert (
        "build: error: the ranks of this job were launched with different build settings (top_k)"
        in done.stderr
    )
    assert not (output_dir / ".cache").exists()  # refused before any work
