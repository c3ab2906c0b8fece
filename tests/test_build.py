"""End-to-end builds with the embedded SmolLM2 and MiniLM on a small crafted corpus."""

import copy
import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from builds import DOCS, assert_close, assert_same_dataset, published_tables, rebuild_settings, small_config
from datasets import load_dataset

from hf_entropylong import cli
from hf_entropylong.builder import build, main
from hf_entropylong.builder import runner as build_module
from hf_entropylong.builder.runner import statuses_of
from hf_entropylong.methods import METHODS
from hf_entropylong.methods.entropylong import STAGES
from hf_entropylong.publish.schema import SCHEMA_VERSION

pytestmark = pytest.mark.slow


def test_layout_and_packed_sequences(demo_build):
    output_dir, counts = demo_build
    for name in ("README.md", "build_config.yaml", "stats.json", ".hf_entropylong.json"):
        assert (output_dir / name).is_file()
    stats = json.loads((output_dir / "stats.json").read_text())
    assert stats == {"schema_version": SCHEMA_VERSION, **dataclasses.asdict(counts)}
    sequences = load_dataset(str(output_dir), split="train")
    assert len(sequences) == counts.sequences > 0
    for row in sequences:
        assert len(row["input_ids"]) == 1024
        assert sum(row["seq_lengths"]) == 1024
        assert len(row["root_ids"]) == len(row["context_ids"])
        units = len(row["seq_lengths"]) - (row["num_padding_tokens"] > 0)
        assert units == len(row["root_ids"])
        assert row["text"]
    assert counts.units == sum(len(row["root_ids"]) for row in sequences)
    assert all(row["num_padding_tokens"] <= 0.8 * 1024 for row in sequences)  # min_row_fill 0.2
    assert counts.units + counts.units_left_over == counts.roots_by_status["ok"]


def test_dependencies_config_is_consistent(demo_build):
    output_dir, counts = demo_build
    roots = load_dataset(str(output_dir), "dependencies", split="train")
    assert len(roots) == counts.roots == len(DOCS)
    by_id = {row["root_id"]: row for row in roots}
    assert set(row["status"] for row in roots) <= set(statuses_of(STAGES))
    for row in roots:
        for position in row["positions"]:
            assert (
                position["token_index"] >= 4
            )  # min_left_context: a root's opening tokens are never positions
            assert row["root_text"][position["char_start"] : position["char_end"]] == position["token"]
            assert position["token"].strip() in position["query"]
        for candidate in row["candidates"]:
            assert candidate["corpus_id"] != row["root_id"]  # the root never retrieves itself
            baseline = next(
                p["entropy"] for p in row["positions"] if p["token_index"] == candidate["token_index"]
            )
            expected = (baseline - candidate["entropy_with_context"]) / baseline
            assert candidate["delta_i"] == pytest.approx(expected, rel=1e-4, abs=1e-5)
            assert candidate["kept"] == (candidate["delta_i"] >= 0.4)
        for context in row["contexts"]:
            assert context["delta_i"] >= 0.4
        assert (row["status"] == "ok") == bool(row["contexts"])
    # Near-copies of a root are excluded: the edited copy of the Velmora text is never its candidate.
    assert all(c["corpus_id"] != "velmora-copy" for c in by_id["velmora"]["candidates"])
    assert counts.candidates_excluded_near_duplicate > 0
    # The accord text supplies what the merchant's biography cannot predict (the name "Velmora Accord").
    assert "velmora" in [c["corpus_id"] for c in by_id["grennick"]["contexts"]]
    assert by_id["short"]["status"] == "no_high_entropy_position"
    assert by_id["long"]["status"] == "root_too_long" and by_id["long"]["positions"] == []
    assert counts.roots_by_status["root_too_long"] == 1
    deltas = [c["delta_i"] for row in roots for c in row["candidates"] if c["kept"]]
    assert counts.mean_delta_i == pytest.approx(np.mean(deltas), abs=1e-4)


def test_dataset_card(demo_build):
    output_dir, counts = demo_build
    card = (output_dir / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert [c["config_name"] for c in header["configs"]] == ["default", "dependencies"]
    assert header["license"] == "odc-by"  # local files: the configured licence
    assert f"| verified dependencies (ΔI ≥ 0.4) | {counts.verified_dependencies} |" in card
    assert "embedded:SmolLM2-135M-Instruct" in card and "best-fit-decreasing" in card


def _with_stage_function(name: str, function):
    """The build's stages (as the test has patched them so far), with `name` running `function`."""
    return tuple(
        dataclasses.replace(stage, function=function) if stage.name == name else stage
        for stage in METHODS["entropylong"]
    )


def test_interrupted_build_resumes_and_matches(docs_file, demo_build, tmp_path, monkeypatch):
    reference_dir, reference_counts = demo_build
    config = small_config(docs_file, tmp_path / "out")
    real_verify, real_entropy = build_module.VERIFY_STAGE.function, build_module.ENTROPY_STAGE.function
    calls = {"verify": 0, "entropy": 0}

    def failing_verify(*args, **kwargs):
        calls["verify"] += 1
        if calls["verify"] > 1:
            raise KeyboardInterrupt  # killed during the second verification shard
        return real_verify(*args, **kwargs)

    def counted_entropy(*args, **kwargs):
        calls["entropy"] += 1
        return real_entropy(*args, **kwargs)

    monkeypatch.setitem(METHODS, "entropylong", _with_stage_function("verify", failing_verify))
    monkeypatch.setitem(METHODS, "entropylong", _with_stage_function("entropy", counted_entropy))
    with pytest.raises(KeyboardInterrupt):
        build(config)
    cache = tmp_path / "out" / ".cache"
    assert [len(list(cache.glob(f"{stage}-*.arrow"))) for stage in ("entropy", "verify", "units")] == [
        2,
        1,
        1,
    ]

    calls.update(verify=-10, entropy=0)  # the resumed run verifies the two unfinished shards
    counts = build(config)
    assert calls == {"verify": -10 + 2, "entropy": 1}  # only the third shard is scored: two were cached
    assert_same_dataset(tmp_path / "out", reference_dir)
    assert dataclasses.replace(counts, seconds={}) == dataclasses.replace(reference_counts, seconds={})


REFERENCE = Path(__file__).parent / "data" / "small_build_reference.json"


def test_tables_equal_the_reference_build(demo_build):
    """The tables equal those of the reference build of the same inputs (tests/data), every column and field, floats
    to the measured tolerance of `builds.assert_close`. When the schema changes on purpose, rewrite the reference with HF_ENTROPYLONG_WRITE_REFERENCE=1 (after
    checking the old fields are unchanged) and say why in the commit."""
    output_dir, _ = demo_build
    tables = published_tables(output_dir)
    if os.environ.get("HF_ENTROPYLONG_WRITE_REFERENCE"):
        REFERENCE.write_text(json.dumps(tables, indent=1) + "\n")
    reference = json.loads(REFERENCE.read_text())
    for name in tables:
        assert_close(tables[name], reference[name], name)


def test_the_reference_comparison_allows_float_noise_but_no_flipped_decision():
    """Within the measured float spread the tables are equal; a flipped decision, a changed status or a float moved
    past the tolerance is not."""
    reference = json.loads(REFERENCE.read_text())["dependencies"]
    candidate = next(c for row in reference for c in row["candidates"] if c["kept"])
    for change, equal in (
        (lambda c: c.update(delta_i=c["delta_i"] * (1 + 1.3e-4)), True),
        (lambda c: c.update(kept=False), False),
        (lambda c: c.update(delta_i=c["delta_i"] * 1.01), False),
    ):
        changed = copy.deepcopy(reference)
        change(next(c for row in changed for c in row["candidates"] if c == candidate))
        if equal:
            assert_close(changed, reference, "dependencies")
        else:
            with pytest.raises(AssertionError):
                assert_close(changed, reference, "dependencies")


def test_cli_yaml_with_overrides_and_edge_cases(docs_file, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "roots": str(docs_file),
                "num_roots": 3,
                "corpus": [str(docs_file)],
                "lm": "embedded:SmolLM2-135M-Instruct",
                "lm_dtype": "float32",
                "embedder": "embedded:all-MiniLM-L6-v2",
                "top_k": 50,  # more than the corpus holds: clamped
                "epsilon": 1.0,  # nothing can reach it: no verified context anywhere
                "max_seq_length": 1024,
                "lm_max_length": 48,  # an LM window shorter than the roots: windowed scoring
                "output_dir": str(tmp_path / "ignored"),
            }
        )
    )
    output_dir = tmp_path / "cli"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["build", "--config", str(recipe), "--output_dir", str(output_dir), "--seed", "7"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("hf-entropylong build: error: nothing to pack")
    assert re.search(r"no_verified_context [1-9]", error) and "ok " not in error
    assert (
        not (tmp_path / "ignored").exists() and not (output_dir / "README.md").exists()
    )  # nothing published
    # The work done is kept: every candidate was verified (in LM windows of 48 tokens) and is cached.
    verified = datasets.concatenate_datasets(
        [
            datasets.Dataset.from_file(str(path))
            for path in sorted((output_dir / ".cache").glob("verify-*.arrow"))
        ]
    )
    assert len(verified) == 3 and max(len(row) for row in verified["candidates"]) > 0
    assert all(not c["kept"] for row in verified["candidates"] for c in row)


def test_republishing_keeps_or_replaces_the_previous_build_whole(demo_build, tmp_path, capsys):
    reference_dir, reference_counts = demo_build
    output_dir = tmp_path / "copy"
    shutil.copytree(reference_dir, output_dir)  # stage caches included: only packing runs again
    config = rebuild_settings(output_dir)
    config["output_dir"] = str(output_dir)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(config))
    reference = load_dataset(str(reference_dir), split="train").to_list()
    card = (output_dir / "README.md").read_text()

    with pytest.raises(SystemExit) as exit_info:  # every row is under-filled: nothing to pack
        cli.main(["build", "--config", str(recipe), "--min_row_fill", "1.0"])
    assert exit_info.value.code == 2 and "nothing to pack" in capsys.readouterr().err
    assert load_dataset(str(output_dir), split="train").to_list() == reference
    assert (output_dir / "README.md").read_text() == card

    counts = main(["--config", str(recipe), "--max_seq_length", "512", "--min_row_fill", "0"])
    rebuilt = load_dataset(str(output_dir), split="train")  # the new build, not datasets' cache of the first
    assert len(rebuilt) == counts.sequences > 0 and {len(ids) for ids in rebuilt["input_ids"]} == {512}


def test_overwrite_output_dir_keeps_the_users_files(demo_build, tmp_path, capsys):
    reference_dir, _ = demo_build
    output_dir = tmp_path / "mine"
    shutil.copytree(reference_dir / ".cache", output_dir / ".cache")
    (output_dir / "notes.txt").write_text("my notes")
    (output_dir / "README.md").write_text("my readme")
    config = rebuild_settings(reference_dir)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({**config, "output_dir": str(output_dir)}))

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["build", "--config", str(recipe)])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "is not empty" in error and "--overwrite_output_dir" in error
    assert (output_dir / "README.md").read_text() == "my readme" and not (output_dir / "default").exists()

    main(["--config", str(recipe), "--overwrite_output_dir", "true"])
    assert (output_dir / "notes.txt").read_text() == "my notes"
    assert [p.read_text() for p in (output_dir / ".cache" / "replaced").glob("*/README.md")] == ["my readme"]
    assert (
        load_dataset(str(output_dir), split="train").to_list()
        == load_dataset(str(reference_dir), split="train").to_list()
    )
