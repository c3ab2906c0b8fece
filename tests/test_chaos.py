"""A build killed at several points (the index write, a stage's map, seeded random renames of the publish swap), its
caches then damaged, and rerun after each: the folder loads as a whole dataset after every kill, and the last
rerun publishes the tables of the uninterrupted build. To stay affordable it starts from the reference build's
caches of all but the last shard's verify and units stages (and no index)."""

import dataclasses
import json
import logging
import os
import random
import shutil
from pathlib import Path

import pytest
from builds import draw_two_plots, small_config
from datasets import load_dataset

from hf_entropylong import files
from hf_entropylong.builder import build
from hf_entropylong.builder import runner as build_module
from hf_entropylong.index import corpus_index
from hf_entropylong.methods import METHODS
from hf_entropylong.publish import writer
from hf_entropylong.publish.writer import TABLES

pytestmark = pytest.mark.slow


class Killed(Exception):
    """The process dies here."""


def _tables(folder: Path) -> str:
    """Both tables as JSON: exact values, and NaN (a candidate the screen never scored) equal to NaN."""
    return json.dumps([load_dataset(str(folder), name, split="train").to_list() for name in TABLES])


def _die_on_call(number: int, real):
    calls = {"n": 0}

    def call(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == number:
            raise Killed(real.__name__)
        return real(*args, **kwargs)

    return call


def _publish_dying(number: int):
    """`publish`, dying at its `number`-th file replace (the swap's renames and the records it writes)."""

    def publish(*args, **kwargs):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "replace", _die_on_call(number, os.replace))
            return writer.publish(*args, **kwargs)

    return publish


def _with_stage(name: str, wrap):
    return tuple(
        dataclasses.replace(stage, function=wrap(stage.function)) if stage.name == name else stage
        for stage in METHODS["entropylong"]
    )


def _damage(path: Path, truncate: bool) -> None:
    data = bytearray(path.read_bytes())
    if truncate:
        del data[len(data) // 2 :]
    else:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_build_killed_anywhere_and_rerun_publishes_the_uninterrupted_tables(
    demo_build,
    docs_file,
    versions,
    tmp_path,
    monkeypatch,
    caplog,
):
    reference_dir, reference_counts = demo_build
    reference = _tables(reference_dir)
    _, variant, counts = versions
    output_dir = tmp_path / "out"
    config = small_config(docs_file, output_dir)
    writer.claim_output_dir(output_dir, overwrite=False)
    with monkeypatch.context() as patch:  # the folder already holds another dataset
        patch.setattr(writer, "write_build_plots", draw_two_plots)
        writer.publish(output_dir, *variant, counts, config)
    previous = _tables(output_dir)
    assert previous != reference
    for cached in sorted((reference_dir / ".cache").glob("*-of-00003.arrow*")):
        last_shard_to_verify = cached.name.startswith(("verify-", "units-")) and "-00002-of-" in cached.name
        if not last_shard_to_verify:
            shutil.copy2(cached, output_dir / ".cache" / cached.name)
    assert (
        len(list((output_dir / ".cache").glob("*.arrow"))) == 3 + 3 + 2 + 2
    )  # entropy, retrieval, verify, units
    rng = random.Random(0)

    kills = {  # each rerun finds the work of the runs before it cached
        "index write": lambda patch: patch.setattr(
            corpus_index, "_write", _die_on_call(1, corpus_index._write)
        ),
        "verify map": lambda patch: patch.setitem(
            METHODS, "entropylong", _with_stage("verify", lambda f: _die_on_call(1, f))
        ),
        "units map": lambda patch: patch.setitem(
            METHODS, "entropylong", _with_stage("units", lambda f: _die_on_call(1, f))
        ),
        "publish swap": lambda patch: patch.setattr(
            build_module, "publish", _publish_dying(rng.randint(1, 12))
        ),
        "publish, again": lambda patch: patch.setattr(
            build_module, "publish", _publish_dying(rng.randint(1, 12))
        ),
    }
    for where, kill in kills.items():
        with monkeypatch.context() as patch:
            kill(patch)
            with pytest.raises(Killed):
                build(config)
        assert _tables(output_dir) in (previous, reference), f"killed at the {where}: not a whole dataset"

    cache = output_dir / ".cache"
    for pattern, truncate in (("units-*.arrow", False), ("verify-*.arrow", True), ("index-*.faiss", False)):
        _damage(sorted(cache.glob(pattern))[-1], truncate)
    files._checked.clear()  # as a new process would
    with caplog.at_level(logging.WARNING):
        counts = build(config)
    assert caplog.text.count("set aside") == 3
    assert len(list(cache.glob("*.corrupt-*"))) == 6  # three files and their checksum records, kept
    assert _tables(output_dir) == reference
    assert dataclasses.replace(counts, seconds={}) == dataclasses.replace(reference_counts, seconds={})
