"""`make gpu-check`'s CPU rehearsal: `benchmarks/gpu_check.py --dry-run` runs every section at toy sizes."""

import json
import subprocess
import sys

import pytest

from .conftest import REPO


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu-check")
    benchmarks = folder / "BENCHMARKS.md"
    benchmarks.write_text(
        "# Benchmarks\n\ntext kept\n<!-- gpu-check:start -->\nold\n<!-- gpu-check:end -->\n"
    )
    command = [sys.executable, str(REPO / "benchmarks/gpu_check.py"), "--dry-run", "--steps", "1"]
    command += ["--out", str(folder / "gpu_check.json"), "--benchmarks", str(benchmarks)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((folder / "gpu_check.json").read_text()), benchmarks.read_text()


def test_every_section_runs(dry_run):
    result, _ = dry_run
    assert result["test_gpu"]["returncode"] == 0 and "skipped" in result["test_gpu"]["summary"]
    assert {row["kernel"] for row in result["kernels"]} == {"flex_attention", "entropylong_varlen"}
    assert all(row["vs_fp32_per_unit_sdpa"] < 1e-5 and row["ms"] > 0 for row in result["kernels"])
    assert [row["model"] for row in result["throughput"]] == ["toy"] * 3
    assert all("error" not in row and row["tokens_per_s"] > 0 for row in result["throughput"])


def test_sequence_parallel_path_equals_the_plain_batch(dry_run):
    path = dry_run[0]["sequence_parallel"]
    assert path["adapter_keys"] == ["input_ids", "labels", "position_ids", "shift_labels"]
    assert abs(path["loss_ulysses"] - path["loss"]) < 1e-6 and path["grads_vs_plain"] < 1e-6


def test_benchmarks_section_is_replaced(dry_run):
    result, text = dry_run
    assert text.startswith("# Benchmarks\n\ntext kept\n")
    assert text.count("<!-- gpu-check:start -->") == 1 and result["markdown"] in text and "old" not in text
