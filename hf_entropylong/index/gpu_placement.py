"""Where the corpus index is searched on a node's GPUs: one copy per rank, sharded over the node, or the CPU.

A build runs one rank per GPU (`accelerate launch`, `torchrun`). The index is placed once per job, by one plan:

- **copy** — every rank clones the index onto its own GPU (`faiss.index_cpu_to_gpu(resources, device, index)`,
  device = the rank's local index on its node, modulo the GPUs it sees). Each GPU then holds exactly one copy and
  every rank searches on its own device. Chosen when one copy fits each GPU.
- **shard** — the index does not fit one GPU but fits the node's GPUs together: once per node, the node's local
  main process splits it over all of them (`faiss.index_cpu_to_all_gpus` with `GpuMultipleClonerOptions.shard`;
  a search asks every shard and merges). Only that process can search it, so the build runs the stages that read
  the index for all the node's root shards there (`builder/runner.py`), the other ranks waiting.
- **cpu** — neither fits: the index is searched on the CPU, and the log says how much GPU memory each choice needs.

The memory an index needs is read from its files before anything is loaded (the index file, plus the merged
inverted lists `<index>.ivfdata` of an on-disk IVF index): codes, ids and quantizer are what the GPU holds, and
FAISS adds its scratch memory on each GPU (`FAISS_TEMP_BYTES`, `StandardGpuResources`' default on GPUs over 8 GiB).
The LM stages share the GPUs with the index, so `index_gpu_reserve_gib` of each GPU's free memory is left to them.
Each rank measures its own GPU's free memory; the main process plans with the least any rank reported and sends
the plan to every rank (all ranks follow one plan; nodes are assumed alike).

An on-disk index (lists memory-mapped from `.ivfdata`) goes to the GPU by way of host memory: its lists are read
into ordinary in-memory lists first (`in_memory`), then cloned.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

GIB = 1024**3
FAISS_TEMP_BYTES = 1536 * 1024**2
"""Scratch memory FAISS's `StandardGpuResources` takes per GPU (its default on GPUs with more than 8 GiB)."""


def faiss_module():
    import faiss

    return faiss


@dataclass(frozen=True)
class NodeGpus:
    """This rank's view of its node: its local index, how many ranks share the node, each GPU's free bytes."""

    local_rank: int
    ranks_on_node: int
    free_bytes: tuple[int, ...]

    @property
    def device(self) -> int:
        """The GPU of this rank: its local index on the node, modulo the GPUs it sees."""
        if not self.free_bytes:
            raise ValueError("this node has no visible GPU.")
        return self.local_rank % len(self.free_bytes)


def local_rank_and_size() -> tuple[int, int]:
    """(this process's index among its node's ranks, ranks on the node), from the launcher."""
    from accelerate import PartialState

    state = PartialState()
    return state.local_process_index, int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes))


def this_node() -> NodeGpus:
    """This process's node: its local rank (accelerate / torchrun), and its own GPU's free memory given for each of
    the node's visible GPUs (measuring the others would open a CUDA context on each of them)."""
    import torch

    local_rank, ranks_on_node = local_rank_and_size()
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return NodeGpus(local_rank, ranks_on_node, ())
    return NodeGpus(local_rank, ranks_on_node, (torch.cuda.mem_get_info(local_rank % count)[0],) * count)


@dataclass(frozen=True)
class IndexPlacement:
    """The plan: `kind` copy / shard / cpu, the GPUs a shard spans, and why (with the memory it needs)."""

    kind: Literal["copy", "shard", "cpu"]
    num_gpus: int = 0
    reason: str = ""


def index_file_bytes(index_path: str | Path) -> int:
    """Bytes of the index file and of its merged inverted lists (`<index>.ivfdata`), if any."""
    ivfdata = Path(f"{index_path}.ivfdata")
    return Path(index_path).stat().st_size + (ivfdata.stat().st_size if ivfdata.exists() else 0)


def plan_placement(index_bytes: int, node: NodeGpus, reserve_bytes: int = 0) -> IndexPlacement:
    """Choose copy, shard or cpu for an index of `index_bytes` on `node`.

    Args:
        index_bytes: what the index holds (`index_file_bytes`).
        node: the node's ranks and each GPU's free memory.
        reserve_bytes: free memory of each GPU left to the LM stages.

    Returns:
        copy when a copy per rank fits every GPU (ranks sharing a GPU each need their own; a rank that sees a
        single GPU is taken to own it), else shard when an equal share fits every GPU, else cpu, with the memory
        each choice needs in `reason`.
    """
    gpus = len(node.free_bytes)
    if gpus == 0:
        return IndexPlacement("cpu", reason="no GPU is visible: searching the index on the CPU.")
    usable = min(node.free_bytes) - reserve_bytes
    # A rank that sees one GPU on a node of several ranks was bound to a GPU of its own by the launcher (Slurm).
    copies_per_gpu = 1 if gpus == 1 else -(-node.ranks_on_node // gpus)
    copy_need = copies_per_gpu * (index_bytes + FAISS_TEMP_BYTES)
    shard_need = -(-index_bytes // gpus) + FAISS_TEMP_BYTES
    if copy_need <= usable:
        return IndexPlacement(
            "copy",
            1,
            f"one copy per rank ({copy_need / GIB:.1f} GiB of {usable / GIB:.1f} GiB usable per GPU).",
        )
    if shard_need <= usable:
        return IndexPlacement(
            "shard",
            gpus,
            f"a copy per rank needs {copy_need / GIB:.1f} GiB per GPU, {usable / GIB:.1f} GiB usable: sharded "
            f"over the node's {gpus} GPUs ({shard_need / GIB:.1f} GiB each), searched by the node's main process.",
        )
    return IndexPlacement(
        "cpu",
        reason=f"the index ({index_bytes / GIB:.1f} GiB) needs {copy_need / GIB:.1f} GiB per GPU as one copy per "
        f"rank or {shard_need / GIB:.1f} GiB per GPU sharded over {gpus} GPUs, FAISS scratch space included; the "
        f"GPUs have {min(node.free_bytes) / GIB:.1f} GiB free, {reserve_bytes / GIB:.1f} GiB of it reserved for "
        "the LM (index_gpu_reserve_gib): searching on the CPU. Use more or larger GPUs, a smaller "
        "index_factory (e.g. PQ codes), or a lower index_gpu_reserve_gib.",
    )


def in_memory(index):
    """`index` with on-disk inverted lists (a merged `.ivfdata`) copied into host memory; others as they are."""
    faiss = faiss_module()
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return index
    lists = faiss.downcast_InvertedLists(ivf.invlists)
    if not isinstance(lists, faiss.OnDiskInvertedLists):
        return index
    copied = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    lists.copy_subset_to(copied, faiss.InvertedLists.SUBSET_TYPE_ID_RANGE, 0, ivf.ntotal)
    ivf.replace_invlists(copied, True)
    copied.this.disown()  # the index owns the lists now
    return index


def _with_lookup_tables(index, options):
    """`options` with float16 lookup tables when `index` has PQ codes over 48 bytes: FAISS's GPU IVFPQ takes such
    codes only with them (up to 96 bytes). Other indexes keep float32 (on a Flat index the flag would store fp16)."""
    faiss = faiss_module()
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return options
    ivf = faiss.downcast_index(ivf)
    if isinstance(ivf, faiss.IndexIVFPQ) and ivf.pq.M > 48:
        options.useFloat16 = True
    return options


def place_index(index, placement: IndexPlacement, node: NodeGpus):
    """`index` on the GPUs the plan names: its rank's GPU (copy), all the node's GPUs (shard), or as it is."""
    if placement.kind == "cpu":
        return index
    faiss = faiss_module()
    index = in_memory(index)
    if placement.kind == "copy":
        options = _with_lookup_tables(index, faiss.GpuClonerOptions())
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), node.device, index, options)
    options = _with_lookup_tables(index, faiss.GpuMultipleClonerOptions())
    options.shard = True
    return faiss.index_cpu_to_all_gpus(index, co=options, ngpu=placement.num_gpus)


def require_gpu_faiss() -> None:
    """Fail early, before any embedding, when FAISS has no GPU support or no GPU is visible."""
    faiss = faiss_module()
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        raise ImportError(
            "index_on_gpu needs a CUDA build of FAISS and a visible GPU: install the [gpu] extra (faiss-gpu) "
            "instead of [cpu] (`pip uninstall faiss-cpu` first), or set index_on_gpu to false."
        )
