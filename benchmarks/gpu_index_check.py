"""GPU check of the index placement (`index/gpu_placement.py`): what the CPU tests cannot prove.

1. `this_node()` on the real GPUs: the local rank from the launcher, one free-memory figure per visible GPU.
2. The plan for indexes of the recipe's sizes (`plan_placement` with the measured free memory).
3. With a CUDA build of FAISS (the `[gpu]` extra): a 2-shard IVF index merged on disk is placed as a copy on this
   rank's GPU (its lists read into memory first) and, with 2+ GPUs, sharded over all of them; each must return the
   CPU index's neighbours (recall@10 against the CPU search, at nprobe = nlist: exact), and the copy must sit on
   the rank's device. Without GPU FAISS this part says so and is skipped (exit code 0, the line `SKIPPED`).

    python benchmarks/gpu_index_check.py                      # one process
    torchrun --nproc_per_node 2 benchmarks/gpu_index_check.py # each rank checks its own device

Prints one line per check; exits non-zero on the first failure. `index_checks()` returns the same lines as rows
(`make gpu-check` runs it as its FAISS section).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import datasets
import numpy as np

from hf_entropylong.index.corpus_index import build_corpus_index, load_index, search
from hf_entropylong.index.gpu_placement import (
    GIB,
    IndexPlacement,
    NodeGpus,
    faiss_module,
    index_file_bytes,
    plan_placement,
    this_node,
)


class KnownVectors:
    """An embedder of "doc i" → row i of a fixed matrix (no model needed)."""

    def __init__(self, vectors):
        self.vectors = vectors

    def encode(self, texts, **kwargs):
        return np.stack([self.vectors[int(text.split()[1])] for text in texts])


class CheckFailed(Exception):
    """A check of the GPU placement did not hold (its message is the check's line)."""


class Checks(list):
    """The check lines so far, each `{"ok": bool | None, "what": str}` (None: a line of information)."""

    def __call__(self, condition: bool | None, what: str) -> None:
        self.append({"ok": condition, "what": what})
        print(("ok   " if condition else "     " if condition is None else "FAIL ") + what, flush=True)
        if condition is False:
            raise CheckFailed(what)


def index_checks(node: NodeGpus | None = None, checks: Checks | None = None) -> Checks:
    """Every check of the module docstring on `node` (this process's, by default); raises `CheckFailed` at the
    first that fails, with the lines so far in `checks`."""
    check = Checks() if checks is None else checks
    node = node or this_node()
    check(
        len(node.free_bytes) > 0 and min(node.free_bytes) > 0,
        f"GPUs seen: {len(node.free_bytes)}, free GiB "
        f"{[round(b / GIB, 1) for b in node.free_bytes]}, local rank {node.local_rank} of {node.ranks_on_node}",
    )
    check(node.device == node.local_rank % len(node.free_bytes), f"this rank's index GPU: {node.device}")
    for gib in (1.5, 19.3, 68.1, 962.1):  # PQ64 and SQ8 at 20M, PQ64 at 1B, SQ8 at 1B (BENCHMARKS.md)
        plan = plan_placement(int(gib * GIB), node, reserve_bytes=24 * GIB)
        check(None, f"{gib:7.1f} GiB index -> {plan.kind}: {plan.reason}")
    faiss = faiss_module()
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        check(
            None,
            "SKIPPED clone and search: this FAISS has no GPU support (install the [gpu] extra: faiss-gpu)",
        )
        return check
    vectors = np.random.default_rng(0).normal(size=(20_000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    corpus = datasets.Dataset.from_dict({"text": [f"doc {i}" for i in range(len(vectors))]})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ivf.faiss"
        build_corpus_index(
            corpus, KnownVectors(vectors), index_path=path, index_factory="IVF64,SQ8", shard_size=10_000
        )
        check(Path(f"{path}.ivfdata").exists(), f"merged on disk: {index_file_bytes(path) / 1e6:.1f} MB")
        queries = vectors[:500]
        expected = search(load_index(path), queries, 10, nprobe=64)[1]
        copy = load_index(path, IndexPlacement("copy", 1), node)
        check(faiss.downcast_index(copy).getDevice() == node.device, f"copy on GPU {node.device}")
        found = search(copy, queries, 10, nprobe=64)[1]
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, expected, strict=True)])
        check(recall >= 0.99, f"copy's recall@10 against the CPU index: {recall:.4f}")
        gpus = len(node.free_bytes)
        if gpus > 1 and node.local_rank == 0:
            sharded = load_index(path, IndexPlacement("shard", gpus), NodeGpus(0, 1, node.free_bytes))
            found = search(sharded, queries, 10, nprobe=64)[1]
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, expected, strict=True)])
            check(recall >= 0.99, f"sharded over {gpus} GPUs: recall@10 against the CPU index {recall:.4f}")
    return check


def main() -> None:
    try:
        index_checks()
    except CheckFailed:
        sys.exit(1)


if __name__ == "__main__":
    main()
