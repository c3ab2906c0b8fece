"""Where the corpus index goes on a node's GPUs (copy per rank, shard over the node, CPU), on CPU: FAISS's GPU
functions are replaced by a recorder that keeps the index on the CPU."""

import datasets
import faiss
import numpy as np
import pytest
from builds import assert_close, small_config
from test_retrieval import Vectors, unit_vectors

from hf_entropylong.builder import build, runner
from hf_entropylong.index import corpus_index, gpu_placement
from hf_entropylong.index.corpus_index import build_corpus_index, load_index, search
from hf_entropylong.index.gpu_placement import (
    FAISS_TEMP_BYTES,
    GIB,
    IndexPlacement,
    NodeGpus,
    index_file_bytes,
    place_index,
    plan_placement,
)

H100 = 80 * GIB


class GpuFaiss:
    """The real faiss module plus a GPU surface: each clone is recorded and the index stays on the CPU."""

    class StandardGpuResources:
        pass

    class GpuClonerOptions:
        useFloat16 = False

    class GpuMultipleClonerOptions(GpuClonerOptions):
        shard = False

    def __init__(self, num_gpus: int):
        self.num_gpus, self.clones = num_gpus, []

    def __getattr__(self, name):
        return getattr(faiss, name)

    def get_num_gpus(self):
        return self.num_gpus

    def index_cpu_to_gpu(self, resources, device, index, co=None):
        self.clones.append(("one gpu", device, index, co.useFloat16))
        return index

    def index_cpu_to_all_gpus(self, index, co=None, ngpu=-1):
        self.clones.append(("all gpus", bool(co and co.shard), ngpu, index))
        return index

    def index_gpu_to_cpu(self, index):
        return index


@pytest.fixture
def gpu_faiss(monkeypatch):
    fake = GpuFaiss(num_gpus=8)
    monkeypatch.setattr(gpu_placement, "faiss_module", lambda: fake)
    monkeypatch.setattr(corpus_index, "_faiss", lambda: fake)
    return fake


def test_each_rank_clones_one_copy_onto_its_own_gpu(gpu_faiss):
    index = faiss.IndexFlatIP(4)
    for local_rank in range(8):  # the ranks of one node of 8 GPUs (on every node alike)
        node = NodeGpus(local_rank, 8, (H100,) * 8)
        plan = plan_placement(20 * GIB, node, reserve_bytes=24 * GIB)
        assert plan.kind == "copy"
        place_index(index, plan, node)
    assert [clone[:2] for clone in gpu_faiss.clones] == [("one gpu", device) for device in range(8)]


def test_ranks_sharing_gpus_take_them_in_turn():
    assert [NodeGpus(rank, 8, (H100,) * 4).device for rank in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]
    with pytest.raises(ValueError, match="no visible GPU"):
        _ = NodeGpus(0, 1, ()).device


@pytest.mark.parametrize(
    "index_gib, ranks, gpus, expected",
    [
        (20, 8, 8, "copy"),  # the recipe's 20M documents as SQ8 codes: one copy per GPU
        (30, 8, 4, "shard"),  # two ranks per GPU would need two copies (63 GiB of 56)
        (30, 8, 1, "copy"),  # each rank sees the one GPU the launcher bound to it
        (72, 8, 1, "cpu"),  # ... which cannot hold it, and there is nothing to shard over
        (72, 8, 8, "shard"),  # 1B documents as PQ64 codes + ids: 9 GiB per GPU sharded
        (500, 8, 8, "cpu"),  # 1B documents as SQ8 codes: over the node's memory
        (1, 1, 0, "cpu"),  # no GPU visible
    ],
)
def test_placement_decision(index_gib, ranks, gpus, expected):
    plan = plan_placement(index_gib * GIB, NodeGpus(0, ranks, (H100,) * gpus), reserve_bytes=24 * GIB)
    assert plan.kind == expected
    assert plan.num_gpus == {"copy": 1, "shard": gpus, "cpu": 0}[expected]


def test_cpu_placement_names_the_memory_each_choice_needs():
    plan = plan_placement(500 * GIB, NodeGpus(0, 8, (H100,) * 8), reserve_bytes=24 * GIB)
    copy_need = (500 * GIB + FAISS_TEMP_BYTES) / GIB
    shard_need = (500 * GIB / 8 + FAISS_TEMP_BYTES) / GIB
    assert f"{copy_need:.1f} GiB per GPU as one copy" in plan.reason
    assert f"{shard_need:.1f} GiB per GPU sharded over 8 GPUs" in plan.reason
    assert "80.0 GiB free, 24.0 GiB of it reserved" in plan.reason and "index_gpu_reserve_gib" in plan.reason


def test_sharded_placement_clones_once_over_the_nodes_gpus(gpu_faiss):
    node = NodeGpus(0, 8, (H100,) * 8)
    plan = plan_placement(72 * GIB, node, reserve_bytes=24 * GIB)
    place_index(faiss.IndexFlatIP(4), plan, node)
    assert [clone[:3] for clone in gpu_faiss.clones] == [("all gpus", True, 8)]


@pytest.mark.parametrize("factory, float16", [("IVF4,PQ64", True), ("IVF4,PQ32", False), ("IVF4,SQ8", False)])
def test_pq_codes_over_48_bytes_get_the_float16_tables_gpu_ivfpq_needs(gpu_faiss, factory, float16):
    index = faiss.index_factory(128, factory, faiss.METRIC_INNER_PRODUCT)
    place_index(index, IndexPlacement("copy", 1), NodeGpus(0, 1, (H100,)))
    assert gpu_faiss.clones[-1][3] == float16


def test_cpu_placement_leaves_the_index_alone(gpu_faiss):
    index = faiss.IndexFlatIP(4)
    assert place_index(index, IndexPlacement("cpu"), NodeGpus(0, 1, ())) is index and not gpu_faiss.clones


@pytest.fixture
def on_disk_index(tmp_path):
    """A 300-vector IVF index merged on disk from 3 shards, and its vectors."""
    vectors = unit_vectors(300, 16, 2)
    corpus = datasets.Dataset.from_dict({"text": [f"doc {i}" for i in range(300)]})
    path = tmp_path / "ivf.faiss"
    build_corpus_index(corpus, Vectors(vectors), index_path=path, index_factory="IVF4,SQ8", shard_size=100)
    return path, vectors


def test_on_disk_index_size_counts_its_merged_lists(on_disk_index):
    path, _ = on_disk_index
    assert index_file_bytes(path) >= path.stat().st_size + 300 * (16 + 8)  # SQ8 codes and ids of every vector


def test_on_disk_index_is_read_into_memory_then_cloned_to_the_gpu(gpu_faiss, on_disk_index):
    path, vectors = on_disk_index
    on_disk = load_index(path)
    assert isinstance(
        faiss.downcast_InvertedLists(faiss.extract_index_ivf(on_disk).invlists), faiss.OnDiskInvertedLists
    )
    node = NodeGpus(3, 8, (H100,) * 8)
    placed = load_index(path, plan_placement(index_file_bytes(path), node), node)
    ((where, device, cloned, float16),) = gpu_faiss.clones
    assert (where, device, float16) == ("one gpu", 3, False) and cloned is placed
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(cloned).invlists)
    assert isinstance(lists, faiss.ArrayInvertedLists) and cloned.ntotal == 300
    queries = vectors[[0, 150, 299]]
    for got, expected in zip(
        search(placed, queries, 5, nprobe=4), search(on_disk, queries, 5, nprobe=4), strict=True
    ):
        np.testing.assert_array_equal(got, expected)


def test_node_root_shards_are_those_of_its_ranks():
    # 2 nodes x 8 ranks, 40 root shards: node 1 holds ranks 8..15, each taking shards r, r + 16, ...
    assert runner.node_root_shards(8, 8, 16, 40) == [s for s in range(40) if s % 16 >= 8]
    assert sorted(runner.node_root_shards(0, 8, 16, 40) + runner.node_root_shards(8, 8, 16, 40)) == list(
        range(40)
    )


@pytest.mark.slow
def test_sharded_index_build_searches_on_the_nodes_main_process_and_matches(
    docs_file, demo_build, tmp_path, gpu_faiss, monkeypatch, capsys
):
    """A node whose GPUs hold the index only together: sharded once over them, the same dataset as a CPU build."""

    def node_that_needs_sharding():
        (index_path,) = (tmp_path / "out" / ".cache").glob("index-*.faiss")
        size = index_file_bytes(index_path)
        return NodeGpus(0, 1, (FAISS_TEMP_BYTES + size * 3 // 4,) * 2)  # a copy does not fit, a half does

    monkeypatch.setattr(runner, "this_node", node_that_needs_sharding)
    build(small_config(docs_file, tmp_path / "out", index_on_gpu=True, index_gpu_reserve_gib=0))
    assert "Index placement: shard" in capsys.readouterr().err
    assert [clone[:3] for clone in gpu_faiss.clones if clone[0] == "all gpus" and clone[1]] == [
        ("all gpus", True, 2)
    ]
    assert not [clone for clone in gpu_faiss.clones if clone[0] == "one gpu"]
    expected = datasets.load_dataset(str(demo_build[0]), "dependencies", split="train")
    got = datasets.load_dataset(str(tmp_path / "out"), "dependencies", split="train")
    assert_close(got.to_list(), expected.to_list(), "dependencies")
