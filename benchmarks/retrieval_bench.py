"""Retrieval, measured: recall@10 of approximate FAISS indexes against exact search, and near-duplicate exclusion.

Recall. The corpus vectors are read back from a build's exact (Flat) index (`--index`); the queries are the real
query windows of builds (`--builds`, as `builder_bench.py` reads them), embedded as the build embeds them. For each
factory (`--factories`) the index is trained on the whole corpus and filled, then searched at each nprobe;
recall@10 = |approximate top 10 ∩ exact top 10| / 10, averaged over the queries. The paper-scale recipe
(IVF32768,PQ256 over 50M+ jina-embeddings-v3 vectors of 1,024 dimensions, nprobe 64) is scaled to the embedded
corpus by keeping what drives the error: the share of inverted lists visited (nprobe / lists: the "recipe nprobe"
column is nprobe × 32,768 / lists) and the dimensions per PQ sub-quantizer (PQ256 on 1,024 dimensions is 4 per
code byte: PQ96 on 384). Times are wall-clock on this machine's threads.

Near-duplicates. For every root of the builds, planted near-copies (words replaced by words of other documents,
sentences reordered, the root inside a longer document, a passage of the root) must be caught by
`is_near_duplicate`; the real candidates the builds retrieved (same-subject neighbours, the hardest negatives)
should not be.

    python benchmarks/retrieval_bench.py --index outputs/demo/.cache/index-*.faiss --builds outputs/demo /tmp/long-roots

Prints Markdown tables.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field

import faiss
import numpy as np
from builder_bench import load_rows
from transformers import HfArgumentParser

from hf_entropylong.index.corpus_index import embed_texts, load_index, search
from hf_entropylong.index.exclusion import is_near_duplicate
from hf_entropylong.models import EMBEDDED_CORPUS, EMBEDDED_EMBEDDER, load_embedder
from hf_entropylong.sources import load_text_source

RECIPE_LISTS = 32_768


@dataclass
class BenchmarkArguments:
    index: str = field(metadata={"help": "A Flat index of the corpus (a build's .cache/index-*.faiss)."})
    builds: list[str] = field(default_factory=list, metadata={"help": "Builds whose query windows are used."})
    factories: list[str] = field(
        default_factory=lambda: ["IVF256,Flat", "IVF256,PQ32", "IVF256,PQ96", "IVF256,SQ8"],
        metadata={"help": "faiss.index_factory strings to measure."},
    )
    nprobes: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    k: int = field(default=10, metadata={"help": "Neighbours compared."})
    embedder_max_seq_length: int = field(default=128, metadata={"help": "As the build's embedder."})
    seed: int = field(default=0)


def recall_part(args: BenchmarkArguments, queries: list[str]) -> None:
    exact = load_index(args.index)
    vectors = exact.reconstruct_n(0, exact.ntotal)
    embedder = load_embedder(EMBEDDED_EMBEDDER)
    embedder.max_seq_length = args.embedder_max_seq_length
    query_vectors = embed_texts(embedder, queries)
    start = time.perf_counter()
    _, truth = search(exact, query_vectors, args.k)
    flat_ms = (time.perf_counter() - start) / len(queries) * 1e6
    print(
        f"\n{len(queries)} query windows, {exact.ntotal:,} documents × {exact.d} dimensions, "
        f"CPU ({faiss.omp_get_max_threads()} threads); exact (Flat) search {flat_ms:,.0f} ms per 1K queries."
    )
    print("| factory | build s | nprobe | recipe nprobe (of 32,768 lists) | recall@10 | ms per 1K queries |")
    print("|---|---|---|---|---|---|")
    for factory in args.factories:
        start = time.perf_counter()
        index = faiss.index_factory(exact.d, factory, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.add(vectors)
        built = time.perf_counter() - start
        lists = faiss.extract_index_ivf(index).nlist
        for nprobe in args.nprobes:
            if nprobe > lists:
                continue
            start = time.perf_counter()
            _, found = search(index, query_vectors, args.k, nprobe)
            ms = (time.perf_counter() - start) / len(queries) * 1e6
            recall = np.mean([len(set(f) & set(t)) / args.k for f, t in zip(found, truth, strict=True)])
            print(
                f"| {factory} | {built:.1f} | {nprobe} | {nprobe * RECIPE_LISTS // lists:,} | {recall:.3f} "
                f"| {ms:,.1f} |"
            )


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]


def near_duplicate_part(args: BenchmarkArguments, roots: list[str], tried: list[list[str]]) -> None:
    corpus, _ = load_text_source(EMBEDDED_CORPUS, role="corpus")
    rng = random.Random(args.seed)
    vocabulary = " ".join(corpus.select(range(500))["text"]).split()

    def replace(text: str, share: float) -> str:
        words = text.split()
        for i in rng.sample(range(len(words)), max(1, round(share * len(words)))):
            words[i] = rng.choice(vocabulary)
        return " ".join(words)

    def reorder(text: str) -> str:
        sentences = _sentences(text)
        rng.shuffle(sentences)
        return " ".join(sentences)

    def inside(text: str) -> str:
        return " ".join(
            [corpus[rng.randrange(len(corpus))]["text"], text, corpus[rng.randrange(len(corpus))]["text"]]
        )

    def passage(text: str) -> str:
        words = text.split()
        return " ".join(words[: max(1, len(words) // 2)]) if len(words) < 400 else " ".join(words[:200])

    planted = {
        "1 word replaced": lambda t: replace(t, 0),
        "5% of words replaced": lambda t: replace(t, 0.05),
        "10% of words replaced": lambda t: replace(t, 0.10),
        "20% of words replaced": lambda t: replace(t, 0.20),
        "sentences reordered": reorder,
        "sentences reordered, 5% replaced": lambda t: replace(reorder(t), 0.05),
        "inside a document 3× longer": inside,
        "a passage of the root (half, at most 200 words)": passage,
    }
    print(f"\nNear-duplicate exclusion (`is_near_duplicate` defaults) over {len(roots)} roots:")
    print("| planted near-copy | caught |")
    print("|---|---|")
    for name, make in planted.items():
        caught = sum(is_near_duplicate(root, make(root)) for root in roots)
        print(f"| {name} | {caught}/{len(roots)} |")
    pairs = [
        (root, candidate) for root, candidates in zip(roots, tried, strict=True) for candidate in candidates
    ]
    flagged = sum(is_near_duplicate(root, candidate) for root, candidate in pairs)
    print(f"| real retrieved candidates (not copies) flagged | {flagged}/{len(pairs)} |")


def main(argv: list[str] | None = None) -> None:
    (args,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses(args=argv)
    corpus, _ = load_text_source(EMBEDDED_CORPUS, role="corpus")
    queries, roots, tried = [], [], []
    for path in args.builds:
        rows = load_rows(path)
        column = "candidates" if "candidates" in rows.column_names else "retrieved"
        for text, positions, hits in zip(rows["root_text"], rows["positions"], rows[column], strict=True):
            queries += [position["query"] for position in positions]
            roots.append(text)
            indices = sorted({hit["corpus_index"] for hit in hits})
            tried.append(corpus[indices]["text"] if indices else [])
    near_duplicate_part(args, roots, tried)
    recall_part(args, queries)


if __name__ == "__main__":
    main()
