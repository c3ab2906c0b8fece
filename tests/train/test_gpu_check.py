"""`make gpu-check`'s CPU rehearsal: `benchmarks/gpu_check.py --dry-run` runs the whole command at toy sizes.

Only what needs a GPU physically differs (float32 on the CPU, no Liger, no flex backward, a planned 80 GiB GPU for
the index placement, the CPU build of the recipe's Hub attention kernel from `cpu_flash_attn2/`): the manifest
check, the worker, the time limits, the atomic records, the numerical checks and the kill are the real ones.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import REPO

SCRIPT = REPO / "benchmarks/gpu_check.py"
sys.path.insert(0, str(REPO / "benchmarks"))
from gpu_wheels import CUDA_ONLY, FROM_IMAGE, write_manifest  # noqa: E402

CPU_KERNEL = REPO / "tests/train/cpu_flash_attn2"
ENV = {**os.environ, "LOCAL_KERNELS": f"kernels-community/flash-attn2={CPU_KERNEL}", "PYTHONUNBUFFERED": "1"}


def records(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "gpu_check.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """The manifest `make gpu-manifest` writes, from this environment."""
    path = tmp_path_factory.mktemp("manifest") / "gpu_manifest.txt"
    write_manifest(path, list(FROM_IMAGE), list(CUDA_ONLY))
    return path


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory, manifest):
    folder = tmp_path_factory.mktemp("gpu-check")
    benchmarks = folder / "BENCHMARKS.md"
    benchmarks.write_text(
        "# Benchmarks\n\ntext kept\n<!-- gpu-check:start -->\nold\n<!-- gpu-check:end -->\n"
    )
    command = [sys.executable, str(SCRIPT), "--dry-run", "--steps", "1", "--manifest", str(manifest)]
    command += ["--out-dir", str(folder / "out"), "--benchmarks", str(benchmarks)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=ENV)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return (
        {record["section"]: record for record in records(folder / "out")},
        done.stdout,
        benchmarks.read_text(),
    )


def test_every_section_runs_and_checks_its_numbers(dry_run):
    by_section, stdout, _ = dry_run
    assert list(by_section)[1:] == [
        "test_gpu", "kernels", "cpt_1b_128k_liger", "cpt_8b_32k_liger", "sequence_parallel", "builder_lm",
        "faiss_index", "cpt_1b_128k", "cpt_8b_32k",
    ]  # fmt: skip
    assert by_section["environment"]["manifest"].endswith("every distribution as pinned")
    assert {r["status"] for r in by_section.values()} == {
        "ok",
        "skipped",
    }  # skipped: no GPU build of FAISS here
    assert (
        "needs a CUDA device" in by_section["test_gpu"]["result"]["output"]
    )  # pytest's whole output is kept
    kernels = by_section["kernels"]["result"]
    assert {row["kernel"] for row in kernels["rows"]} == {"flex_attention", "entropylong_varlen"}
    assert all(check["ok"] and check["bound"] == "≤ 1e-05" for check in kernels["checks"])
    assert len(kernels["checks"]) == 3  # both outputs, and varlen's gradients (flex has no CPU backward)
    row = by_section["cpt_8b_32k"]["result"]["row"]
    assert row["tokens_per_s"] > 0 and row["step"] == "fwd+bwd"
    builder = by_section["builder_lm"]["result"]
    assert builder["entropy_tokens_per_s"] > 0 and builder["verify_tokens_per_s"] > 0
    assert max(builder["vs_naive"].values()) < 1e-5
    assert "| kernels | ok |" in stdout and "| faiss_index | skipped |" in stdout  # the summary table


def test_recipe_attention_runs_under_ulysses(dry_run):
    """The 8B recipe's attention, resolved by name through `kernels` (here to its CPU build), as the core of
    `UlyssesSPAttentionHF`: equal to the plain batch and to the block-diagonal sdpa reference."""
    rows = {row["attention"]: row for row in dry_run[0]["sequence_parallel"]["result"]["rows"]}
    assert set(rows) == {"entropylong_varlen", "kernels-community/flash-attn2"}
    for row in rows.values():
        assert row["adapter_keys"] == ["input_ids", "labels", "position_ids", "shift_labels"]
        assert row["loss_vs_plain"] < 1e-6 and row["grads_vs_plain"] < 1e-6
        assert row["loss_vs_sdpa"] < 1e-5 and row["grads_vs_sdpa"] < 1e-5


def test_benchmarks_section_is_replaced(dry_run, tmp_path):
    _, _, text = dry_run
    assert text.startswith("# Benchmarks\n\ntext kept\n") and "old" not in text
    assert text.count("<!-- gpu-check:start -->") == 1 and "| builder_lm | ok |" in text


def test_failures_timeouts_and_a_kill_keep_every_finished_section(tmp_path, manifest):
    """A kernel outside its tolerance fails the run; a section past its limit is killed and the next one runs in
    a fresh worker; SIGTERM mid-section prints the summary and keeps every finished section."""
    out = tmp_path / "out"
    command = [sys.executable, str(SCRIPT), "--dry-run", "--steps", "1", "--manifest", str(manifest)]
    command += ["--sections", "kernels,sequence_parallel,cpt_8b_32k", "--tolerance", "kernels=1e-12"]
    command += ["--timeout", "sequence_parallel=0.5"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**ENV, "GPU_CHECK_OUT": str(out)})  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "gpu_check.jsonl").exists() and "sequence_parallel" in (
            out / "gpu_check.jsonl"
        ).read_text():
            break
        time.sleep(0.2)
    time.sleep(1)  # cpt_8b_32k is in flight
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 1, stdout[-3000:]
    by_section = {record["section"]: record for record in records(out)}
    assert [r["status"] for r in by_section.values()] == ["ok", "failed", "timeout", "killed"]
    failed = [c["what"] for c in by_section["kernels"]["result"]["checks"] if not c["ok"]]
    assert failed == ["flex_attention output"]  # varlen is the reference's own function on the CPU: error 0
    assert "limit of 0.5 s" in by_section["sequence_parallel"]["error"]
    assert "SIGTERM" in by_section["cpt_8b_32k"]["error"]
    assert "| kernels | failed |" in stdout and "| cpt_8b_32k | killed |" in stdout
    assert not list(out.glob("*.tmp"))


def test_missing_or_mismatched_packages_are_named_before_any_work(tmp_path, manifest):
    wrong = tmp_path / "manifest.txt"
    wrong.write_text(manifest.read_text() + "pytest==0.0.1\nno-such-distribution==1.0\n")
    command = [sys.executable, str(SCRIPT), "--dry-run", "--manifest", str(wrong), "--out-dir", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert f"pytest {pytest.__version__} is installed, the manifest needs pytest==0.0.1" in done.stdout
    assert "no-such-distribution: not installed" in done.stdout and "nothing run" in done.stdout
    assert [r["section"] for r in records(tmp_path)] == ["environment"]
