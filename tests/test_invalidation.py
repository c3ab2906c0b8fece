"""What a setting does to the caches, checked on builds rather than on the declarations: a field declared
output-neutral leaves the tables unchanged, and ε, α and k rerun the stages they reach (never reuse stale ones)."""

import dataclasses
import shutil

import pytest
from builds import assert_close, small_config
from datasets import load_dataset

from hf_entropylong.builder import build
from hf_entropylong.builder.config import SETTINGS_GROUPS, ExecutorSettings
from hf_entropylong.settings import is_output_neutral

pytestmark = pytest.mark.slow

# A value for every field declared output-neutral, other than small_config's (one build tries them all).
NEUTRAL_VALUES = {
    "embed_batch_size": 5,
    "entropy_batch_size": 3,
    "logits_chunk_size": 7,
    "verify_batch_size": 2,
    "index_shard_size": 5,
    "index_gpu_reserve_gib": 8.0,
    "quest_query_batch_size": 3,
    "shard_size": 2,
    "trust_remote_code": True,
    "dataset_license": "mit",
    "pretty_name": "Another title",
    "overwrite_output_dir": True,
}
# Neutral fields no CPU test can switch: a GPU, the Hub; and the folders, which every build here sets anyway.
NOT_SWITCHED = {"index_on_gpu", "push_to_hub", "hub_repo_id", "hub_private", "output_dir", "cache_dir"}
# Where the work runs, which `build` reads before any stage (tests/test_executors.py builds on each executor).
NOT_SWITCHED |= {field.name for field in dataclasses.fields(ExecutorSettings)}


def _tables(output_dir) -> dict:
    return {
        name: load_dataset(str(output_dir), name, split="train").to_list()
        for name in ("default", "dependencies")
    }


def test_every_output_neutral_field_is_switched_by_the_neutrality_build():
    declared = {
        field.name
        for group in SETTINGS_GROUPS
        for field in dataclasses.fields(group)
        if is_output_neutral(group, field.name)
    }
    assert declared == set(NEUTRAL_VALUES) | NOT_SWITCHED, (
        "a newly neutral field needs a value in NEUTRAL_VALUES"
    )


def test_output_neutral_fields_leave_the_tables_unchanged(docs_file, demo_build, tmp_path):
    reference_dir, _ = demo_build
    config = small_config(docs_file, tmp_path / "out", cache_dir=str(tmp_path / "cache"), **NEUTRAL_VALUES)
    build(config)
    got, expected = _tables(tmp_path / "out"), _tables(reference_dir)
    for name in expected:
        assert_close(got[name], expected[name], name)


@pytest.fixture(scope="module")
def shared_cache(demo_build, tmp_path_factory):
    """A copy of the reference build's cache: a build with one setting changed shares it, so a stale stage would be
    found (a copy: the reference build's own cache stays as other tests expect it)."""
    cache = tmp_path_factory.mktemp("shared") / "cache"
    shutil.copytree(demo_build[0] / ".cache", cache)
    return cache


@pytest.mark.parametrize(
    "change, check",
    [
        (
            {"epsilon": 0.88},
            lambda root: all(c["kept"] == (c["delta_i"] >= 0.88) for c in root["candidates"]),
        ),
        (
            {"top_k": 1},
            lambda root: all(
                len({c["corpus_id"] for c in root["candidates"] if c["token_index"] == p["token_index"]}) <= 1
                for p in root["positions"]
            ),
        ),
    ],
    ids=["epsilon", "top_k"],
)
def test_a_changed_setting_never_reuses_a_stale_stage(docs_file, shared_cache, tmp_path, change, check):
    build(small_config(docs_file, tmp_path / "out", cache_dir=str(shared_cache), min_row_fill=0.0, **change))
    roots = load_dataset(str(tmp_path / "out"), "dependencies", split="train").to_list()
    assert any(root["candidates"] for root in roots)
    assert all(check(root) for root in roots)


def test_a_changed_alpha_rescores_the_roots(docs_file, demo_build, shared_cache, tmp_path):
    base = load_dataset(str(demo_build[0]), "dependencies", split="train").to_list()
    build(small_config(docs_file, tmp_path / "out", cache_dir=str(shared_cache), min_row_fill=0.0, alpha=1.0))
    lower = load_dataset(str(tmp_path / "out"), "dependencies", split="train").to_list()
    count = lambda roots: sum(len(root["positions"]) for root in roots)  # noqa: E731
    assert count(lower) > count(base) > 0
