"""Index memory and search cost from 20M to 1B documents, and recall@10 against exact search at a buildable size.

Computed part (no data needed). For each corpus size N and factory, the memory an IVF index holds is
N × (code bytes + 8 bytes of id) + nlist × d × 4 (coarse centroids) + the OPQ rotation (d × d × 4) and PQ codebooks
(256 × d × 4): the code bytes
are read from FAISS itself (`index_factory(...).code_size`, through `extract_index_ivf`), d = 1,024 (jina-embeddings-v3).
nlist grows with N (32,768 at 20M, the recipe's; 65,536 at 100M; 262,144 at 1B, ≈ 8·√N). Search cost per query:
the codes it scans, nprobe × N / nlist, and their bytes, at two shares of the lists: 1/16 (the recipe's nprobe
2,048 of 32,768, what reached recall 0.95 with SQ8 on real query windows) and 1/512 (In-Context Pretraining's nprobe
64 of 32,768). The placement column is `index.gpu_placement.plan_placement`'s choice for one node. `--queries` (default: the paper-scale build's 100K roots × 292 positions) times the bytes scanned, at
`--scan_tb_per_s` per GPU (an assumption: IVF scans run well below the H100's 3.35 TB/s), gives the GPU-hours of
retrieval.

Measured part. `--num_vectors` vectors of `--dim` dimensions from FAISS's own `SyntheticDataset` (a 10-dimensional
manifold bent into d dimensions by sin(): not random noise, not real embeddings), L2-normalised, inner product.
Each factory (IVF`--nlist`) is trained on `--num_train` vectors, filled, written to disk (its bytes beside the
formula's), and searched for `--num_queries` queries; recall@10 = |top 10 ∩ exact top 10| / 10 against a Flat
index, at several nprobe.

    python benchmarks/index_scale.py                       # both parts (a few minutes on 2 cores)
    python benchmarks/index_scale.py --measure false        # the computed table only
    python benchmarks/index_scale.py --num_vectors 20000 --num_train 10000 --nlist 128 --opq_iterations 10

Prints Markdown tables.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
from faiss.contrib.datasets import SyntheticDataset
from transformers import HfArgumentParser

from hf_entropylong.index.gpu_placement import NodeGpus, plan_placement

FACTORIES = ("SQ8", "PQ64", "PQ256", "OPQ64:PQ64", "OPQ256:PQ256")
"""Code part of each factory; `OPQm:PQm` is `OPQm,IVFn,PQm` (rotation before the coarse quantizer)."""
SIZES = {20_000_000: 32_768, 100_000_000: 65_536, 1_000_000_000: 262_144}
GPU_MAX_PQ_BYTES = 96
"""FAISS's GPU IVFPQ (without the interleaved layout) takes codes of at most 96 bytes (`IVFPQ::isSupportedPQCodeLength`)."""
GIB = 1024**3


@dataclass
class ScaleArguments:
    dim: int = field(default=1024, metadata={"help": "Embedding dimensions (jina-embeddings-v3: 1,024)."})
    queries: int = field(
        default=100_000 * 292, metadata={"help": "Queries of the build (roots × positions)."}
    )
    scan_tb_per_s: float = field(default=1.0, metadata={"help": "Assumed IVF scan rate per GPU (TB/s)."})
    gpus: int = field(default=8, metadata={"help": "GPUs the index is sharded over (one node)."})
    gpu_gib: float = field(default=80.0, metadata={"help": "Memory of one GPU (GiB)."})
    reserve_gib: float = field(
        default=24.0, metadata={"help": "GPU memory left to the LM (index_gpu_reserve_gib)."}
    )
    measure: bool = field(default=True, metadata={"help": "Also build and measure indexes here."})
    num_vectors: int = field(default=100_000, metadata={"help": "Vectors of the measured indexes."})
    num_train: int = field(default=40_000, metadata={"help": "Training vectors (≥ 39 per list)."})
    num_queries: int = field(default=1_000, metadata={"help": "Queries of the recall measurement."})
    nlist: int = field(default=1024, metadata={"help": "Inverted lists of the measured indexes."})
    opq_iterations: int = field(
        default=50, metadata={"help": "OPQ training iterations (FAISS's default: 50)."}
    )
    nprobes: list[int] = field(default_factory=lambda: [2, 16, 64, 128], metadata={"help": "nprobe values."})


def factory_string(code: str, nlist: int) -> str:
    rotation, _, codes = code.rpartition(":")
    return f"{rotation + ',' if rotation else ''}IVF{nlist},{codes}"


def index_shape(code: str, dim: int, nlist: int) -> tuple[int, int]:
    """(code bytes per vector, bytes of the OPQ rotation and PQ codebooks) of an untrained index, read from FAISS."""
    index = faiss.index_factory(dim, factory_string(code, nlist), faiss.METRIC_INNER_PRODUCT)
    tables = 0
    if isinstance(index, faiss.IndexPreTransform):
        chain = index.chain
        tables = sum(faiss.downcast_VectorTransform(chain.at(i)).d_in * dim * 4 for i in range(chain.size()))
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    if isinstance(ivf, faiss.IndexIVFPQ):
        tables += ivf.pq.centroids.size() * 4
    return ivf.code_size, tables


def index_bytes(num: int, code_bytes: int, transform_bytes: int, nlist: int, dim: int) -> int:
    return num * (code_bytes + 8) + nlist * dim * 4 + transform_bytes


def computed_table(args: ScaleArguments) -> None:
    print(
        f"| documents | factory | code B | index GiB | per GPU, sharded over {args.gpus} (GiB) | placement on "
        f"{args.gpus}× {args.gpu_gib:g} GiB, {args.reserve_gib:g} GiB left to the LM | "
        f"GB scanned per query at 1/16 / 1/512 of lists | GPU-hours for {args.queries / 1e6:.1f}M queries "
        f"at 1/16 / 1/512 ({args.scan_tb_per_s:g} TB/s per GPU, assumed) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for num, nlist in SIZES.items():
        for code in FACTORIES:
            code_bytes, transform = index_shape(code, args.dim, nlist)
            total = index_bytes(num, code_bytes, transform, nlist, args.dim)
            per_gpu = total / args.gpus / GIB
            node = NodeGpus(0, args.gpus, (int(args.gpu_gib * GIB),) * args.gpus)
            fits = plan_placement(total, node, int(args.reserve_gib * GIB)).kind
            if code.endswith(("PQ256",)) and code_bytes > GPU_MAX_PQ_BYTES:
                fits += " (GPU IVFPQ: ≤ 96 B codes; CPU or cuVS)"
            scanned = [num / share * code_bytes for share in (16, 512)]
            hours = [args.queries * s / (args.scan_tb_per_s * 1e12) / 3600 for s in scanned]
            print(
                f"| {num / 1e6:,.0f}M | {factory_string(code, nlist)} | {code_bytes} | {total / GIB:,.1f} | "
                f"{per_gpu:,.1f} | {fits} | {scanned[0] / 1e9:.2f} / {scanned[1] / 1e9:.3f} | "
                f"{hours[0]:,.0f} / {hours[1]:,.1f} |"
            )


def measured_table(args: ScaleArguments) -> None:
    clock = time.perf_counter()
    data = SyntheticDataset(args.dim, args.num_train, args.num_vectors, args.num_queries, metric="IP")
    train, base, queries = data.xt, data.xb, data.xq
    for x in (train, base, queries):
        faiss.normalize_L2(x)
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(base)
    truth = exact.search(queries, 10)[1]
    print(
        f"\n{args.num_vectors:,} SyntheticDataset vectors of {args.dim} dimensions (made and searched exactly in "
        f"{time.perf_counter() - clock:.0f} s), {args.num_queries} queries, IVF{args.nlist}, trained on "
        f"{args.num_train:,}:\n"
    )
    header = " | ".join(f"recall@10, nprobe {n} ({n / args.nlist:.1%})" for n in args.nprobes)
    print(
        f"| factory | bytes on disk | formula | build s | {header} | ms per 1K queries at nprobe {args.nprobes[1]} |"
    )
    print("|---|---|---|---|" + "---|" * len(args.nprobes) + "---|")
    for code in FACTORIES:
        clock = time.perf_counter()
        index = faiss.index_factory(args.dim, factory_string(code, args.nlist), faiss.METRIC_INNER_PRODUCT)
        if isinstance(index, faiss.IndexPreTransform):
            faiss.downcast_VectorTransform(index.chain.at(0)).niter = args.opq_iterations
        index.train(train)
        index.add(base)
        seconds = time.perf_counter() - clock
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "index.faiss"
            faiss.write_index(index, str(path))
            on_disk = path.stat().st_size
        code_bytes, transform = index_shape(code, args.dim, args.nlist)
        formula = index_bytes(args.num_vectors, code_bytes, transform, args.nlist, args.dim)
        recalls, timing = [], 0.0
        for nprobe in args.nprobes:
            faiss.ParameterSpace().set_index_parameter(index, "nprobe", nprobe)
            clock = time.perf_counter()
            found = index.search(queries, 10)[1]
            if nprobe == args.nprobes[1]:
                timing = (time.perf_counter() - clock) / len(queries) * 1e6
            recalls.append(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))
        print(
            f"| {factory_string(code, args.nlist)} | {on_disk / 1e6:.1f} MB | {formula / 1e6:.1f} MB | {seconds:.0f} | "
            + " | ".join(f"{r:.3f}" for r in recalls)
            + f" | {timing:.0f} |"
        )


def main(args: ScaleArguments) -> None:
    computed_table(args)
    if args.measure:
        measured_table(args)


if __name__ == "__main__":
    (arguments,) = HfArgumentParser((ScaleArguments,)).parse_args_into_dataclasses()
    main(arguments)
