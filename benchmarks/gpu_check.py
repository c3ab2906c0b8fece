"""`make gpu-check`: every GPU claim of the project, checked and measured on one GPU in one command.

The sections (`gpu_sections.py`, which says what each measures and checks) run in order of value: the GPU tests,
the packed-attention kernels at 131,072 tokens, the CPT step at the 1B and 8B shapes with Liger, the
sequence-parallel path, the builder's LM stages at the 8B shape, the FAISS index on the GPU, then the CPT step
without Liger. About 6-7 minutes on one H100 (estimated, not yet run), within 9.5 minutes (`--budget`) whatever
happens; each section's own limit is in `SECTIONS`.

How a run keeps what it measured:

1. Before any work, the installed packages are checked against the manifest (`gpu_wheels.verify`): a missing or
   mismatched distribution is named and the run stops (exit 1). Only the standard library is imported until then.
2. The sections run one after the other in a worker process (spawned: it imports torch and the libraries once).
   Each has its own time limit; past it, the worker and everything it started (compile workers, pytest) are killed,
   the section is recorded as `timeout`, and the next section starts in a fresh worker. A worker that fails a
   section is replaced too (a CUDA error can leave its context unusable).
3. Each finished section is appended to `gpu_check.jsonl` atomically (the file is rewritten to a temporary name
   and renamed over the old one), and `summary.md` is rewritten the same way, so a kill at any moment leaves every
   finished section in both and never half a line.
4. A section fails when it raises, times out, or one of its numerical checks is outside its stated bound. The
   summary table is printed at the end, and on SIGTERM or Ctrl-C (the section in flight is recorded as `killed`);
   the exit status is 1 when any section failed or did not finish.

Files, in `--out-dir` (else `$GPU_CHECK_OUT`, else `$OUT`, else `outputs/gpu_check`): `gpu_check.jsonl`,
`summary.md`, `test_gpu.log`. `--benchmarks BENCHMARKS.md` also replaces the file's gpu-check section; `--render
FILE.jsonl` does only that, from the records of a run made elsewhere. `--dry-run` runs the same command on the CPU
at toy sizes (no Liger, whose kernels need CUDA; 5 minutes per section): the test suite runs it. The sections run offline
(`HF_HUB_OFFLINE=1` unless the environment sets it): the recipes' Hub attention kernel is checked when it is in the
Hub cache (`hf download kernels-community/flash-attn2`) or in a folder named by `LOCAL_KERNELS`, and recorded as
refused otherwise.

    python benchmarks/gpu_check.py --out-dir outputs/gpu_check --benchmarks BENCHMARKS.md
    python benchmarks/gpu_check.py --dry-run --out-dir /tmp/gpu_check
    python benchmarks/gpu_check.py --render outputs/gpu_check/gpu_check.jsonl --benchmarks BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from gpu_report import markdown, summary_table, write_benchmarks
from gpu_wheels import verify

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "benchmarks/gpu_manifest.txt"
# The sections in order of value, and each one's time limit in seconds (estimated on one H100: about 6-7
# minutes in all; `--budget` stops the whole run in time, whatever the limits add up to).
SECTIONS = {
    "test_gpu": 150,
    "kernels": 120,
    "cpt_1b_128k_liger": 90,
    "cpt_8b_32k_liger": 90,
    "sequence_parallel": 60,
    "builder_lm": 90,
    "faiss_index": 45,
    "cpt_1b_128k": 60,
    "cpt_8b_32k": 60,
}
DRY_RUN_LIMIT = 300
PASSING = ("ok", "skipped")
PACKAGES = (
    "torch",
    "transformers",
    "accelerate",
    "deepspeed",
    "trl",
    "datasets",
    "kernels",
    "liger-kernel",
    "flash-attn",
)


class Stopped(Exception):
    """SIGTERM or SIGINT arrived: record the section in flight as killed and print the summary."""


def append_record(path: Path, record: dict) -> None:
    """Add one JSON line to `path` atomically: the old lines and the new one go to a temporary file, renamed over."""
    temporary = path.with_name(path.name + ".tmp")
    previous = path.read_bytes() if path.exists() else b""
    with open(temporary, "wb") as file:
        file.write(previous + (json.dumps(record, default=str) + "\n").encode())
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def error_reply(error: Exception) -> dict:
    traceback.print_exc()
    message = f"{type(error).__name__}: {' '.join(str(error).split())}"[:500]
    return {"error": message, "traceback": traceback.format_exc()}


def serve(connection, device: str, steps: int, out_dir: str, overrides: dict) -> None:
    """The worker: run the sections the parent names, one at a time, and send back each one's result as JSON."""
    os.setpgid(0, 0)  # its own process group, so that a timeout kills whatever the section started too
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read once, at import: every section sees the same Hub
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        import gpu_sections

        context, failure = gpu_sections.Context(device, steps, Path(out_dir), overrides), None
    except Exception as error:  # each section then says why (an import the machine cannot satisfy, say)
        failure = error_reply(error)
    while True:
        name = connection.recv()
        try:
            reply = failure or {"result": gpu_sections.FUNCTIONS[name](context)}
        except Exception as error:
            reply = error_reply(error)
        connection.send(json.dumps(reply, default=str))


class Worker:
    """A spawned `serve` process, killed with its whole process group when a section overruns or the run stops."""

    def __init__(self, *arguments):
        parent, child = multiprocessing.get_context("spawn").Pipe()
        self.connection = parent
        self.process = multiprocessing.get_context("spawn").Process(target=serve, args=(child, *arguments))
        self.process.start()

    def run(self, name: str, timeout: float) -> dict:
        """The section's reply, or `{"status": "timeout" | "crashed", ...}` (the worker is then dead)."""
        self.connection.send(name)
        if not self.connection.poll(timeout):
            self.kill()
            return {"status": "timeout", "error": f"killed after its limit of {timeout:g} s"}
        try:
            return json.loads(self.connection.recv())
        except EOFError:
            self.process.join(5)
            return {"status": "crashed", "error": f"the worker died (exit code {self.process.exitcode})"}

    def kill(self) -> None:
        if self.process.is_alive():
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.join(10)


def status_of(reply: dict) -> str:
    if "status" in reply:
        return reply["status"]
    if "error" in reply:
        return "error"
    result = reply["result"]
    if not all(check["ok"] for check in result.get("checks", [])):
        return "failed"
    return "skipped" if result.get("skipped") else "ok"


def device_name(dry_run: bool) -> str:
    if dry_run:
        return f"CPU (dry run, {platform.processor() or platform.machine()})"
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return listed.stdout.strip().splitlines()[0] if listed.returncode == 0 and listed.stdout.strip() else "?"


def parse_settings(pairs: list[str], option: str, parser) -> dict[str, float]:
    settings = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in SECTIONS or not value:
            parser.error(
                f"{option} {pair!r}: expected SECTION=NUMBER with SECTION one of {', '.join(SECTIONS)}"
            )
        settings[name] = float(value)
    return settings


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def default_out_dir() -> Path:
    return Path(os.environ.get("GPU_CHECK_OUT") or os.environ.get("OUT") or REPO / "outputs/gpu_check")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="the same command on the CPU at toy sizes")
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="$GPU_CHECK_OUT, else $OUT, else outputs/gpu_check"
    )
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated, run in this order")
    parser.add_argument("--timeout", action="append", default=[], help="SECTION=SECONDS, overrides its limit")
    parser.add_argument("--tolerance", action="append", default=[], help="SECTION=BOUND for all its checks")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds for all the sections together (570; dry run 1800)"
    )
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help="the exact versions to verify first")
    parser.add_argument("--benchmarks", type=Path, help="replace this file's gpu-check section by the tables")
    parser.add_argument("--render", type=Path, help="only render the records of this gpu_check.jsonl")
    args = parser.parse_args(argv)
    if args.render:
        records = [json.loads(line) for line in args.render.read_text().splitlines()]
        records = [r for r in records if r.get("run") == records[-1].get("run")]  # the last run's
        print(summary_table([r for r in records if r["section"] != "environment"]))
        if args.benchmarks:
            write_benchmarks(args.benchmarks, markdown(records))
        return 0
    sections = [name for name in args.sections.split(",") if name]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections: unknown {unknown}; the sections are {', '.join(SECTIONS)}")
    timeouts, overrides = (
        parse_settings(args.timeout, "--timeout", parser),
        parse_settings(args.tolerance, "--tolerance", parser),
    )
    out_dir = args.out_dir or default_out_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    results, run = out_dir / "gpu_check.jsonl", time.strftime("%Y-%m-%dT%H:%M:%S")
    records: list[dict] = []

    def finish(record: dict) -> None:
        record["run"] = run
        records.append(record)
        append_record(results, record)
        write_atomically(out_dir / "summary.md", markdown(records) + "\n")

    problems = (
        verify(args.manifest, cuda=not args.dry_run)
        if args.manifest.exists()
        else [f"{args.manifest}: missing"]
    )
    environment = {
        "section": "environment",
        "status": "failed" if problems else "ok",
        "device": device_name(args.dry_run),
        "python": platform.python_version(),
        "manifest": f"{args.manifest.name}: " + ("; ".join(problems) or "every distribution as pinned"),
        "packages": {name: installed_version(name) for name in PACKAGES},
    }
    finish(environment)
    if problems:
        print(
            f"gpu-check: {len(problems)} package(s) missing or mismatched, nothing run:\n  "
            + "\n  ".join(problems)
        )
        print("Install them (`make gpu-wheels` where pip works, then `make gpu-check` installs .whl/gpu).")
        return 1

    def stop(signum, frame):
        raise Stopped(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker, device = None, "cpu" if args.dry_run else "cuda"
    # The dry run's toy sections take seconds, but a shared CPU can be slow, and DeepSpeed compiles its CPU
    # communication op on first use: there every section gets DRY_RUN_LIMIT unless --timeout says otherwise.
    limits = dict.fromkeys(SECTIONS, DRY_RUN_LIMIT) if args.dry_run else SECTIONS
    args.budget = args.budget or (1800 if args.dry_run else 570)
    deadline = time.perf_counter() + args.budget

    def record(name: str, reply: dict, start: float) -> str:
        status = status_of(reply)
        finish(
            {"section": name, "status": status, "seconds": time.perf_counter() - start}
            | reply
            | {"status": status}
        )
        print(f"== {name}: {status} in {time.perf_counter() - start:.0f} s", flush=True)
        return status

    try:
        for name in sections:
            start = time.perf_counter()
            limit = min(timeouts.get(name, limits[name]), deadline - start)
            if limit <= 0:
                record(
                    name,
                    {"status": "not run", "error": f"the run's budget of {args.budget:g} s was spent"},
                    start,
                )
                continue
            try:
                print(f"== {name} (limit {limit:g} s)", flush=True)
                worker = worker or Worker(device, args.steps, str(out_dir), overrides)
                reply = worker.run(name, limit)
            except Stopped as stopped:
                record(name, {"status": "killed", "error": f"killed by {stopped}"}, start)
                raise
            if record(name, reply, start) not in PASSING:
                worker.kill()  # a fresh worker for the next section: a CUDA error can poison this one
                worker = None
    except Stopped:
        pass
    finally:
        if worker is not None:
            worker.kill()
    table = summary_table(records[1:])
    print(f"\n{environment['device']}\n{table}")
    if args.benchmarks:
        write_benchmarks(args.benchmarks, markdown(records))
    complete = [r["section"] for r in records[1:]] == sections
    return 0 if complete and all(r["status"] in PASSING for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
