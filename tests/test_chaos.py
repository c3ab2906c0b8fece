"""A build killed at seeded random points (the index write, a stage's map, a rename of the publish swap), its
caches then damaged, and rerun after each: the folder loads as a whole dataset after every kill, and the last
rerun publishes the tables of the uninterrupted build."""

import dataclasses
import logging
import os
import random
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


def _tables(folder: Path):
    return tuple(load_dataset(str(folder), name, split="train").to_list() for name in TABLES)


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
    rng = random.Random(0)

    kills = {  # each rerun finds the work of the runs before it cached
        "index write": lambda patch: patch.setattr(
            corpus_index, "_write", _die_on_call(1, corpus_index._write)
        ),
        "verify map": lambda patch: patch.setitem(
            METHODS, "entropylong", _with_stage("verify", lambda f: _die_on_call(rng.randint(1, 3), f))
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
