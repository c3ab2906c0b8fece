"""The paper's ablations (README, "Comparing data recipes") through one cache: each reruns only what it changes."""

import contextlib
import shutil

import pytest
from builds import small_config

from hf_entropylong.builder import build
from hf_entropylong.builder.runner import NothingToPackError

STAGES = ("entropy", "retrieval", "verify", "units")


@pytest.mark.slow
@pytest.mark.parametrize(
    "setting, first",
    [({"epsilon": 0.2}, "verify"), ({"alpha": 1.5}, "entropy"), ({"order": "sequence"}, "units")],
    ids=["epsilon", "alpha", "order"],
)
def test_an_ablation_sharing_the_cache_reruns_only_the_stages_from_the_one_it_changes(
    setting, first, docs_file, demo_build, tmp_path
):
    reference_dir, _ = demo_build
    cache = tmp_path / "cache"  # a copy: other tests read the reference build's own cache as it was built
    shutil.copytree(reference_dir / ".cache", cache)

    def cached() -> dict[str, set]:
        files = {stage: set(cache.glob(f"{stage}-*.arrow")) for stage in STAGES}
        return files | {"index": set(cache.glob("index-*.faiss"))}

    before = cached()
    with contextlib.suppress(NothingToPackError):  # the caches are the point, not what this variant packs
        build(small_config(docs_file, tmp_path / "variant", cache_dir=str(cache), **setting))
    after = cached()
    rerun = {stage for stage in STAGES if after[stage] - before[stage]}
    assert rerun == set(STAGES[STAGES.index(first) :])
    assert after["index"] == before["index"]  # the corpus index is shared by every variant
