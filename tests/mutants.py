"""`make mutants`: deliberate breakages of the package, each of which a named test must catch.

Each mutant names a behaviour, the code that implements it (a snippet, found wherever it now lives in its file, so
mutants survive line moves), the breaking replacement, and the tests that claim to cover it. For each mutant, the
tree is copied to a temporary folder, the snippet is replaced there, and the tests run on the copy. A mutant is
caught when pytest reports a FAILED test among those named (an assertion of the test body, not an error while
setting up or collecting); `survived` when they all pass; `broken` when the copy did not get that far or the snippet
is gone (the mutant must then be updated to the code). Prints one line per mutant and `caught N/M`; exits 1 unless
every mutant is caught. Slow (each mutant runs its tests from scratch): not part of CI.

    python tests/mutants.py [NAME_SUBSTRING ...]
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    find: str
    replace: str
    tests: tuple[str, ...]


MUTANTS = (
    Mutant(
        "every rank clones the index onto GPU 0",
        "hf_entropylong/index/gpu_placement.py",
        "        return self.local_rank % len(self.free_bytes)\n",
        "        return 0\n",
        ("tests/test_gpu_placement.py::test_each_rank_clones_one_copy_onto_its_own_gpu",),
    ),
    Mutant(
        "ranks sharing a GPU counted as one copy",
        "hf_entropylong/index/gpu_placement.py",
        "copies_per_gpu = 1 if gpus == 1 else -(-node.ranks_on_node // gpus)",
        "copies_per_gpu = 1",
        ("tests/test_gpu_placement.py::test_placement_decision",),
    ),
    Mutant(
        "an on-disk index cloned from its memory-mapped lists",
        "hf_entropylong/index/gpu_placement.py",
        "    index = in_memory(index)\n",
        "",
        ("tests/test_gpu_placement.py::test_on_disk_index_is_read_into_memory_then_cloned_to_the_gpu",),
    ),
    Mutant(
        "rank 1 of 2 computes no shard (the main process computes them after the barrier)",
        "hf_entropylong/builder/runner.py",
        "    for shard in range(rank, num_shards, world):\n",
        "    for shard in range(rank, num_shards if rank == 0 else 0, world):\n",
        ("tests/test_distributed.py::test_two_processes_build_the_one_process_dataset",),
    ),
    Mutant(
        "every datatrove task of the root shards runs the first task's shards",
        "hf_entropylong/builder/pipelines.py",
        "shards = range(rank, -(-len(roots) // self.config.shard_size), world_size)",
        "shards = range(0, -(-len(roots) // self.config.shard_size), world_size)",
        ("tests/test_executors.py::test_local_executor_with_two_workers_builds_the_one_process_tables",),
    ),
    Mutant(
        "epsilon declared output-neutral (a changed epsilon would reuse stale verification caches)",
        "hf_entropylong/stages/verify.py",
        'output_neutral: ClassVar[tuple[str, ...]] = ("verify_batch_size",)',
        'output_neutral: ClassVar[tuple[str, ...]] = ("verify_batch_size", "epsilon")',
        (
            "tests/test_invalidation.py::test_every_output_neutral_field_is_switched_by_the_neutrality_build",
            "tests/test_invalidation.py::test_a_changed_setting_never_reuses_a_stale_stage",
        ),
    ),
    Mutant(
        "distinct candidates counted with repeats",
        "hf_entropylong/publish/counts.py",
        'len({c["corpus_index"] for c in row})',
        'len([c["corpus_index"] for c in row])',
        ("tests/test_counts.py::test_stats_and_card_count_what_the_tables_hold",),
    ),
    Mutant(
        "concat ignores near_duplicate_threshold",
        "hf_entropylong/methods/concat.py",
        "                    settings.near_duplicate_threshold,\n",
        "                    0.3,\n",
        ("tests/test_baselines.py::test_concat_and_quest_honour_the_near_copy_threshold",),
    ),
    Mutant(
        "the root itself is not excluded from its candidates",
        "hf_entropylong/index/exclusion.py",
        "    if same_source and corpus_id == root_id:\n",
        "    if False:\n",
        (
            "tests/test_build.py::test_dependencies_config_is_consistent",
            "tests/test_build.py::test_tables_equal_the_reference_build",
        ),
    ),
    Mutant(
        "ΔI computed with the wrong sign",
        "hf_entropylong/stages/verify.py",
        "(baseline - with_context) / safe",
        "(with_context - baseline) / safe",
        ("tests/test_verify.py",),
    ),
    Mutant(
        "rows under min_row_fill are published",
        "hf_entropylong/publish/packing.py",
        "most_padding = int((1 - settings.min_row_fill) * settings.max_seq_length)",
        "most_padding = settings.max_seq_length",
        ("tests/test_build.py::test_republishing_keeps_or_replaces_the_previous_build_whole",),
    ),
    Mutant(
        "a build of schema version 1 is read with the current names",
        "hf_entropylong/publish/schema.py",
        "    return NAMES[version]",
        "    return NAMES[SCHEMA_VERSION]",
        ("tests/test_report.py::test_a_build_of_schema_version_1_reads_as_the_current_one",),
    ),
    Mutant(
        "every RULER score is 0",
        "hf_entropylong/eval/scoring.py",
        "    return METRICS[metric](prediction, references)",
        "    return 0.0",
        ("tests/eval/test_scripted_reader.py",),
    ),
    Mutant(
        "the trainer never checks the parallelism settings",
        "hf_entropylong/train/trainer.py",
        "        check_parallelism(\n",
        "        (lambda *args: None)(\n",
        ("tests/train/test_run.py::test_the_trainer_refuses_parallelism_that_mixes_units",),
    ),
    Mutant(
        "under DeepSpeed-Ulysses the trainer keeps the whole-sequence keys DeepSpeed cannot shard",
        "hf_entropylong/train/trainer.py",
        'if parallelism is not None and parallelism.sp_backend == "deepspeed" and parallelism.sp_size > 1:',
        "if False:",
        ("tests/train/test_ulysses.py::test_accelerate_launch_ulysses_two_processes",),
    ),
    Mutant(
        "a stage imports the builder (an import pointing up the layers)",
        "hf_entropylong/stages/entropy.py",
        "from ..models import encode_documents\n",
        "from ..builder import config as _config  # noqa: F401\nfrom ..models import encode_documents\n",
        ("tests/test_architecture.py",),
    ),
    Mutant(
        "NExtLong's meta-chunks close a line early (a line that would just fit starts the next chunk)",
        "hf_entropylong/methods/nextlong.py",
        "if group_start is not None and length + end - start > max_chars:",
        "if group_start is not None and length + end - start >= max_chars:",
        ("tests/test_baselines.py::test_meta_chunks_group_whole_lines_greedily_within_the_limit_in_order",),
    ),
    Mutant(
        "NExtLong drops negatives that merely resemble the root (a chunk that is a passage of it counts as a copy)",
        "hf_entropylong/index/exclusion.py",
        "        if near_copy is None:\n",
        "        if True:\n",
        (
            "tests/test_baselines.py::test_nextlong_keeps_negatives_that_resemble_the_root_and_drops_copies_of_it",
        ),
    ),
    Mutant(
        "MDS export gives the padding tail an indices pair (the authors' trainer would train on it)",
        "hf_entropylong/interop/mds.py",
        "    spans = list(seq_lengths[:-1] if num_padding_tokens else seq_lengths)\n",
        "    spans = list(seq_lengths)\n",
        ("tests/test_interop.py::test_mds_round_trip_through_streaming",),
    ),
    Mutant(
        "re-tokenizing keeps each position's old token index",
        "hf_entropylong/interop/retokenize.py",
        '{**p, "token_index": moved[p["token_index"]]}',
        "{**p}",
        ("tests/test_interop.py::test_retokenized_build_keeps_every_dependency",),
    ),
    Mutant(
        "Ulysses accepts any attention whose name contains flash",
        "hf_entropylong/train/spans.py",
        "        if value not in SEQUENCE_PARALLEL_ATTENTION:\n",
        '        if value not in SEQUENCE_PARALLEL_ATTENTION and "flash" not in str(value):\n',
        ("tests/train/test_sp_attention.py::test_exact_names_only",),
    ),
    Mutant(
        "gpu-check passes a measurement outside its tolerance",
        "benchmarks/gpu_sections.py",
        "ok = math.isfinite(value) and (value >= bound if at_least else value <= bound)",
        "ok = True",
        ("tests/train/test_gpu_check.py::test_failures_timeouts_and_a_kill_keep_every_finished_section",),
    ),
    Mutant(
        "a missing path is sent to the Hub",
        "hf_entropylong/sources.py",
        "    if not path.exists() and looks_like_a_path(source):\n",
        "    if False:\n",
        ("tests/test_sources.py::test_a_missing_path_is_refused_at_once_never_sent_to_the_hub",),
    ),
    Mutant(
        "a package a recipe needs is found missing only once the model has loaded",
        "hf_entropylong/train/run.py",
        "    check_run_packages(args.training.report_to, args.long.liger_kernels, source)\n",
        "",
        ("tests/train/test_recipes.py::test_recipe_trains_a_step_with_its_own_settings",),
    ),
    Mutant(
        "the verification screen re-checks every candidate, whatever its screen ΔI",
        "hf_entropylong/stages/verify.py",
        "g is None or bool((g >= settings.verify_screen_epsilon).any())",
        "True",
        ("tests/test_verify_screen.py::test_every_candidate_re_checked_gets_the_exact_scores_bit_for_bit",),
    ),
    Mutant(
        "the screen reads the candidate's first passage, not the one nearest the query",
        "hf_entropylong/stages/screen.py",
        "start = starts[shared.index(max(shared))]",
        "start = starts[0]",
        (
            "tests/test_verify_screen.py::"
            "test_the_screen_reads_the_passage_sharing_the_roots_rare_tokens_near_each_position",
        ),
    ),
)


def _copy_tree(target: Path) -> None:
    """The files git tracks and the untracked ones it does not ignore, as they are in the working tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
        elif source.is_symlink():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(source), target / name)


def run(mutant: Mutant) -> tuple[str, str]:
    """('caught' | 'survived' | 'broken', detail)."""
    with tempfile.TemporaryDirectory(prefix="mutant-") as folder:
        copy = Path(folder)
        _copy_tree(copy)
        path = copy / mutant.file
        code = path.read_text(encoding="utf-8")
        if code.count(mutant.find) != 1:
            return (
                "broken",
                f"the snippet is found {code.count(mutant.find)} times in {mutant.file}: update the mutant",
            )
        path.write_text(code.replace(mutant.find, mutant.replace), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *mutant.tests],
            cwd=copy, env=env, capture_output=True, text=True,
        )  # fmt: skip
    failed = re.findall(r"^FAILED (\S+)", done.stdout, flags=re.MULTILINE)
    named = [test for test in failed if any(test.startswith(prefix) for prefix in mutant.tests)]
    if done.returncode == 1 and named:
        return "caught", named[0]
    if done.returncode == 0:
        return "survived", "every named test passed"
    return "broken", done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]


def main(selected: list[str]) -> int:
    mutants = [m for m in MUTANTS if not selected or any(s in m.name for s in selected)]
    caught = 0
    for mutant in mutants:
        outcome, detail = run(mutant)
        caught += outcome == "caught"
        print(f"{outcome:>8}  {mutant.name}  [{detail}]", flush=True)
    print(f"caught {caught}/{len(mutants)}")
    return 0 if caught == len(mutants) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
