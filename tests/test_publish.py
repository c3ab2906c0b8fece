"""Publishing as a reader sees it: the folder loads as the previous dataset or the new one at every kill point of
the swap; only the tool's own files are ever removed; damaged records are named and rewritten; a failed push is
one line; nothing published names an absolute path of the building machine."""

import json
import logging
import os
from pathlib import Path

import pytest
import yaml
from builds import draw_two_plots, small_config
from datasets import load_dataset

from hf_entropylong import cli
from hf_entropylong.publish import writer
from hf_entropylong.publish.writer import MARKER, TABLES, OutputSettings, publish, push_folder

pytestmark = pytest.mark.slow


class Killed(Exception):
    """The process dies here."""


def _tables(folder: Path) -> str:
    """Both tables as JSON: exact values, and NaN (a candidate the screen never scored) equal to NaN."""
    return json.dumps([load_dataset(str(folder), name, split="train").to_list() for name in TABLES])


def _fresh(tmp_path, name, versions, docs_file, monkeypatch):
    """A folder holding the previous dataset, published by the tool."""
    old, _, counts = versions
    folder = tmp_path / name
    writer.claim_output_dir(folder, overwrite=False)
    monkeypatch.setattr(writer, "write_build_plots", draw_two_plots)
    publish(folder, *old, counts, small_config(docs_file, folder))
    return folder


def _kill_at(monkeypatch, target: int | None):
    """Count renames, replaces and removals; raise `Killed` at call number `target`."""
    calls = {"n": 0}

    def counted(real):
        def call(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == target:
                raise Killed(calls["n"])
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(os, "replace", counted(os.replace))
    monkeypatch.setattr(Path, "rename", counted(Path.rename))
    monkeypatch.setattr(Path, "unlink", counted(Path.unlink))
    return calls


def test_every_kill_point_of_a_publish_leaves_the_old_or_the_new_dataset(
    versions, docs_file, tmp_path, monkeypatch
):
    old, new, counts = versions
    reference = _fresh(tmp_path, "reference", versions, docs_file, monkeypatch)
    old_tables = _tables(reference)
    with monkeypatch.context() as patch:
        calls = _kill_at(patch, None)
        publish(reference, *new, counts, small_config(docs_file, reference))
    kill_points, new_tables = calls["n"], _tables(reference)
    assert new_tables != old_tables and kill_points > 10
    published = sorted(str(p.relative_to(reference)) for p in reference.rglob("*") if ".cache" not in p.parts)
    seen = []
    for point in range(1, kill_points + 1):
        folder = _fresh(tmp_path, f"killed-{point}", versions, docs_file, monkeypatch)
        with monkeypatch.context() as patch:
            _kill_at(patch, point)
            with pytest.raises(Killed):
                publish(folder, *new, counts, small_config(docs_file, folder))
        tables = _tables(folder)
        assert tables in (old_tables, new_tables), f"killed at {point}: a mix of two datasets"
        seen.append(tables == new_tables)
        publish(folder, *new, counts, small_config(docs_file, folder))  # the rerun
        assert _tables(folder) == new_tables
        left = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".cache" not in p.parts)
        assert left == published, f"killed at {point}: the rerun left other files"
        assert not list((folder / ".cache").glob("publish-*"))
    assert not seen[0] and seen[-1]  # early kills keep the old dataset, late ones have the new one


def test_publishing_never_removes_what_the_tool_did_not_write(versions, docs_file, tmp_path, monkeypatch):
    old, _, counts = versions
    folder = tmp_path / "mine"
    for name in (
        ".cache/publish/notes.txt",
        ".cache/previous/notes.txt",
        "default/mine.parquet",
        "README.md",
    ):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(f"my {name}")
    writer.claim_output_dir(folder, overwrite=True)
    monkeypatch.setattr(writer, "write_build_plots", draw_two_plots)
    for _ in range(2):
        publish(folder, *old, counts, small_config(docs_file, folder))
    for name in (".cache/publish/notes.txt", ".cache/previous/notes.txt", "default/mine.parquet"):
        assert (folder / name).read_text() == f"my {name}"
    assert [p.read_text() for p in (folder / ".cache" / "replaced").glob("*/README.md")] == ["my README.md"]
    assert len(load_dataset(str(folder), split="train")) == counts.sequences


def test_an_empty_marker_or_timing_record_is_named_and_rewritten(
    versions, docs_file, tmp_path, monkeypatch, caplog
):
    old, _, counts = versions
    folder = _fresh(tmp_path, "out", versions, docs_file, monkeypatch)
    (seconds,) = (folder / ".cache").glob("seconds-*.json")
    for broken in (folder / MARKER, seconds):  # what a full disk left behind
        broken.write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        publish(folder, *old, counts, small_config(docs_file, folder))
    assert str(folder / MARKER) in caplog.text and str(seconds) in caplog.text
    assert json.loads(seconds.read_text()) == counts.seconds
    assert json.loads((folder / MARKER).read_text())["published"]
    assert len(load_dataset(str(folder), split="train")) == counts.sequences


def test_the_card_and_config_name_no_absolute_path(demo_build):
    output_dir, _ = demo_build
    root = str(output_dir.parent.parent)
    for name in ("README.md", "build_config.yaml"):
        assert root not in (output_dir / name).read_text(), name
    config = yaml.safe_load((output_dir / "build_config.yaml").read_text())
    assert config["output_dir"] == "." and config["cache_dir"] is None
    assert (
        not Path(config["roots"]).is_absolute() and (output_dir / config["roots"]).is_file()
    )  # relative to it


def test_a_push_without_network_is_one_line(demo_build, monkeypatch, capsys):
    import httpx2
    from huggingface_hub import HfApi

    output_dir, _ = demo_build

    def no_network(*args, **kwargs):
        raise httpx2.ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(HfApi, "create_repo", no_network)
    settings = OutputSettings(output_dir=str(output_dir), push_to_hub=True, hub_repo_id="org/name")
    with pytest.raises(SystemExit) as exit_info:
        cli.run(lambda argv: push_folder(output_dir, settings), [], prog="hf-entropylong build")
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(error.splitlines()) == 1
    assert "org/name" in error and "name resolution" in error and "is complete" in error
    assert "--push_to_hub" in error and "Traceback" not in error


def test_a_marker_never_makes_the_tool_remove_files_outside_its_dataset(
    versions, docs_file, tmp_path, monkeypatch
):
    old, _, counts = versions
    folder = _fresh(tmp_path, "out", versions, docs_file, monkeypatch)
    outside = tmp_path / "precious.txt"
    outside.write_text("mine")
    (folder / "notes.txt").write_text("mine")
    marker = json.loads((folder / MARKER).read_text())
    marker["published"] += ["../precious.txt", str(outside), "notes.txt"]
    (folder / MARKER).write_text(json.dumps(marker))
    publish(folder, *old, counts, small_config(docs_file, folder))
    assert outside.read_text() == "mine" and (folder / "notes.txt").read_text() == "mine"


def test_a_full_disk_during_a_publish_is_one_line_and_keeps_the_dataset(
    versions, docs_file, tmp_path, monkeypatch, capsys
):
    import errno

    old, new, counts = versions
    folder = _fresh(tmp_path, "out", versions, docs_file, monkeypatch)
    before = _tables(folder)

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", disk_full)
        with pytest.raises(SystemExit) as exit_info:
            cli.run(
                lambda argv: publish(folder, *new, counts, small_config(docs_file, folder)), [], prog="build"
            )
    error = capsys.readouterr().err.strip()
    last = error.splitlines()[-1]  # after the progress bars
    assert (
        exit_info.value.code == 2
        and last.startswith("build: error: publishing into")
        and "Traceback" not in error
    )
    assert str(folder) in last and "No space left" in last and "run the same command again" in last
    assert _tables(folder) == before
    publish(folder, *new, counts, small_config(docs_file, folder))  # space again
    assert _tables(folder) != before
