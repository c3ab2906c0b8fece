"""Dense retrieval of candidate contexts: query windows, embeddings, a FAISS index, and exclusion of copies.

Query windows. The query for a high-entropy token is the word(s) the token overlaps plus the `w` whitespace-separated
words on each side (w = 16), cut from the root text through the token's character span (a fast tokenizer's offset
mapping). Word boundaries are found once per text and the token's words by binary search, so a long root with many
positions costs O(log n + w) per query.

Embedding. Queries and corpus documents are embedded by a sentence-transformers model and L2-normalised, so inner
product is cosine similarity. Models with task adapters (jina-embeddings-v3) get the prompt name as their task too.

Index. `faiss.index_factory(d, factory, METRIC_INNER_PRODUCT)`: "Flat" is exact search; IVF factories
("IVF65536,PQ64", …) are trained on a random sample of `train_size` vectors. The corpus is processed in shards
of `shard_size` documents. Each shard's embeddings are a `Dataset.map` written next to the index, so a killed
embedding restarts at the first unfinished shard. Vectors are added shard by shard; for an IVF factory with
more than one shard, each shard becomes its own index file and the inverted lists are merged on disk
(`faiss.contrib.ondisk`): the merged index then memory-maps `<index>.ivfdata` instead of holding the corpus
in RAM. Corpus row i is vector id i.

The index is written to `index_path` and loaded from it when the file exists: the path must name everything the
index depends on (corpus, embedder and its prompt, factory); the caller picks it.

Exclusion. The root itself and near-copies of it must never be candidates (prepending a copy trivially lowers
entropy). Both texts become sets of word 4-shingles (lower-cased, punctuation stripped); a candidate is a near-copy
when the shingles they share are at least `threshold` (0.3) of the smaller set. Taking the smaller set catches a
copy in either direction: the root inside a longer document, and a candidate that is a passage of the root (a
long root assembled from corpus documents). Short shingles and a low threshold survive edits: each changed word
breaks at most 4 shingles, so a root with a fifth of its words replaced still shares about a third of them,
while real neighbours of a Wikipedia summary (`benchmarks/retrieval_bench.py`) share at most a fifth.

The build's retrieval stage (`RETRIEVAL_STAGE`, `retrieve_candidates`) embeds every query of a shard at once,
searches 2k + 2 neighbours (the extra hits absorb the exclusions) and keeps the first `top_k` that are neither
the root (same id, when roots and corpus are one source) nor a near-copy of it.
"""

from __future__ import annotations

import bisect
import functools
import logging
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import datasets
import numpy as np

from .stage import Stage, require_positive, setting

logger = logging.getLogger(__name__)


@dataclass
class IndexSettings:
    """The FAISS index over the corpus embeddings."""

    output_neutral: ClassVar[tuple[str, ...]] = ("index_shard_size", "index_on_gpu")

    index_factory: str = setting(
        "Flat", help="faiss.index_factory string: Flat (exact) or e.g. IVF32768,SQ8 (trained, approximate)."
    )
    document_prompt_name: str | None = setting(
        None, help="Embedder prompt for corpus documents (jina-embeddings-v3: retrieval.passage)."
    )
    index_train_size: int = setting(262_144, help="Vectors sampled (seeded by `seed`) to train an IVF index.")
    index_shard_size: int = setting(
        1_000_000, help="Documents per embedding shard; IVF shards merge on disk."
    )
    index_on_gpu: bool = setting(False, help="Build and search the index on the GPUs (faiss-gpu).")

    def __post_init__(self):
        require_positive(self, "index_train_size", "index_shard_size")


@dataclass
class RetrievalSettings:
    """How candidates are searched for each high-entropy position."""

    query_prompt_name: str | None = setting(
        None, help="Embedder prompt for queries (jina-embeddings-v3: retrieval.query)."
    )
    top_k: int = setting(
        5, help="Candidates kept per position, after excluding the root and its near-copies."
    )
    nprobe: int | None = setting(
        None, help="Inverted lists visited per query (IVF indexes; more is slower and more exact)."
    )
    near_duplicate_threshold: float = setting(
        0.3,
        help="Word 4-shingles shared by the root and a candidate, as a share of the smaller text's, that mark "
        "the candidate a near-copy.",
    )

    def __post_init__(self):
        require_positive(self, "top_k", "nprobe")
        if not 0 < self.near_duplicate_threshold <= 1:
            raise ValueError(
                f"near_duplicate_threshold must be in (0, 1], got {self.near_duplicate_threshold}."
            )


_WORD = re.compile(r"\S+")
_PUNCT = re.compile(r"[^\w\s]")


@functools.lru_cache(maxsize=8)
def _word_spans(text: str) -> tuple[list[int], list[int], list[str]]:
    """Start offsets, end offsets and words of `text` (cached: one root is queried at many positions)."""
    matches = list(_WORD.finditer(text))
    return [m.start() for m in matches], [m.end() for m in matches], [m.group() for m in matches]


def query_window(text: str, char_start: int, char_end: int, words_each_side: int = 16) -> str:
    """The query for the token at characters [char_start, char_end) of `text`.

    Args:
        text: the root document.
        char_start, char_end: the token's span, from `tokenizer(text, return_offsets_mapping=True)`.
        words_each_side: how many whitespace-separated words to take before and after the token's word(s).

    Returns:
        The token's word(s) and their neighbours, joined by single spaces, with their original spelling. A token
        inside a word gives the whole word; a leading space is ignored; a whitespace-only or empty span takes the
        next word (the last one at the end of the text) as its own.
    """
    starts, ends, words = _word_spans(text)
    if not words:
        return ""
    start = max(char_start, 0)
    end = max(char_end, start + 1)
    first = bisect.bisect_right(ends, start)  # first word ending after the span starts
    last = bisect.bisect_left(starts, end) - 1  # last word starting before the span ends
    if first > last:  # no word overlaps the span: the word after it
        first = last = min(first, len(words) - 1)
    return " ".join(words[max(0, first - words_each_side) : last + words_each_side + 1])


def embed_texts(
    embedder,
    texts: list[str],
    batch_size: int = 64,
    prompt_name: str | None = None,
    show_progress_bar: bool = False,
) -> np.ndarray:
    """Embed `texts` with a sentence-transformers model.

    Args:
        embedder: a `SentenceTransformer`.
        texts: the texts.
        batch_size: texts per forward pass.
        prompt_name: a prompt of the model (e.g. "retrieval.query" / "retrieval.passage" for jina-embeddings-v3);
            models that take a `task` keyword (task adapters) receive it as the task as well.
        show_progress_bar: show sentence-transformers' progress bar.

    Returns:
        float32 array [len(texts), d], each row of unit L2 norm (cosine similarity = inner product).
    """
    extra = {}
    if prompt_name is not None and "task" in getattr(embedder, "get_model_kwargs", list)():
        extra["task"] = prompt_name
    vectors = embedder.encode(
        texts,
        batch_size=batch_size,
        prompt_name=prompt_name,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=show_progress_bar,
        **extra,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), -1)


def _faiss():
    import faiss

    return faiss


def _to_gpu(index):
    faiss = _faiss()
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        raise ImportError(
            "index_on_gpu needs a CUDA build of FAISS and a visible GPU: install the [gpu] extra (faiss-gpu-cu12) "
            "instead of [cpu] (`pip uninstall faiss-cpu` first), or set index_on_gpu to false."
        )
    return faiss.index_cpu_to_all_gpus(index)


def _is_ivf(index) -> bool:
    try:
        _faiss().extract_index_ivf(index)
    except RuntimeError:
        return False
    return True


def _write(index, path: Path) -> None:
    """Write atomically: a killed write never leaves a file that looks finished."""
    faiss = _faiss()
    partial = path.with_name(path.name + ".partial")
    faiss.write_index(
        faiss.index_gpu_to_cpu(index) if hasattr(faiss, "index_gpu_to_cpu") else index, str(partial)
    )
    partial.replace(path)


def num_corpus_shards(corpus: datasets.Dataset, shard_size: int) -> int:
    return max(1, -(-len(corpus) // shard_size))


def embed_corpus_shards(
    corpus: datasets.Dataset,
    embedder,
    index_path: str | Path,
    shards: list[int],
    text_column: str = "text",
    batch_size: int = 64,
    prompt_name: str | None = None,
    shard_size: int = 1_000_000,
) -> None:
    """Embed the given corpus shards into `<index_path>.embeddings/` (a process's part of `build_corpus_index`).

    Several processes can each embed their own shards; `build_corpus_index` then finds them all cached.
    """
    _embed_shards(
        corpus,
        embedder,
        text_column,
        Path(f"{index_path}.embeddings"),
        batch_size,
        prompt_name,
        shard_size,
        shards,
    )


def _embed_shards(
    corpus: datasets.Dataset,
    embedder,
    text_column: str,
    folder: Path,
    batch_size: int,
    prompt_name: str | None,
    shard_size: int,
    shards: list[int] | None = None,
) -> list[datasets.Dataset]:
    """Embeddings of the given shards (default: all) of `shard_size` rows, each a `Dataset.map` cached in `folder`."""
    if text_column not in corpus.column_names:
        raise ValueError(f"the corpus has no column {text_column!r} (columns: {corpus.column_names}).")
    folder.mkdir(parents=True, exist_ok=True)
    texts = corpus.select_columns([text_column])
    num_shards = num_corpus_shards(corpus, shard_size)

    def embed(batch):
        return {"embedding": embed_texts(embedder, batch[text_column], batch_size, prompt_name)}

    done = []
    for shard in range(num_shards) if shards is None else shards:
        rows = texts.select(range(shard * shard_size, min((shard + 1) * shard_size, len(corpus))))
        name = f"shard-{shard:05d}-of-{num_shards:05d}"
        done.append(
            rows.map(
                embed,
                batched=True,
                batch_size=batch_size * 16,
                remove_columns=[text_column],
                cache_file_name=str(folder / f"{name}.arrow"),
                new_fingerprint=f"{folder.name}-{name}",
                desc=f"Embedding corpus ({shard + 1}/{num_shards})",
            ).with_format("numpy")
        )
    return done


def load_index(index_path: str | Path, use_gpu: bool = False):
    """Read a saved index; on the GPUs when asked, unless its lists live on disk (merged IVF shards)."""
    index = _faiss().read_index(str(index_path))
    on_disk = Path(f"{index_path}.ivfdata").exists()
    return _to_gpu(index) if use_gpu and not on_disk else index


def build_corpus_index(
    corpus: datasets.Dataset,
    embedder,
    index_path: str | Path,
    index_factory: str = "Flat",
    text_column: str = "text",
    batch_size: int = 64,
    prompt_name: str | None = None,
    use_gpu: bool = False,
    shard_size: int = 1_000_000,
    train_size: int = 262_144,
    seed: int = 0,
):
    """Embed `corpus` and build an inner-product FAISS index over it, or load it when `index_path` exists.

    Args:
        corpus: the documents; row i becomes vector id i.
        embedder: a `SentenceTransformer`.
        index_path: the index file. It must encode the corpus, the embedder (and prompt) and the factory: an
            existing file is loaded as is. Embedding shards are cached in `<index_path>.embeddings/`, per-shard
            indexes in `<index_path>.shards/` (removed once merged) and merged IVF lists in `<index_path>.ivfdata`.
        index_factory: a `faiss.index_factory` string ("Flat", "IVF4096,Flat", "IVF65536,PQ64", …).
        text_column: the corpus column to embed.
        batch_size: texts per embedding forward pass.
        prompt_name: the embedder's prompt for documents (e.g. "retrieval.passage").
        use_gpu: train and fill the index on all GPUs (a CUDA build of FAISS: the `[gpu]` extra); an in-memory
            index is returned on the GPUs, an on-disk merged one stays on the CPU.
        shard_size: documents per embedding/indexing shard.
        train_size: vectors sampled to train factories that need training (IVF, PQ).
        seed: seed of the training sample.

    Returns:
        The FAISS index.
    """
    faiss = _faiss()
    index_path = Path(index_path)
    if use_gpu:
        _to_gpu(faiss.IndexFlatIP(1))  # fail before any embedding when FAISS has no GPU support
    if index_path.exists():
        return load_index(index_path, use_gpu)
    if len(corpus) == 0:
        raise ValueError("cannot index an empty corpus.")
    index_path.parent.mkdir(parents=True, exist_ok=True)
    shards = _embed_shards(
        corpus, embedder, text_column, Path(f"{index_path}.embeddings"), batch_size, prompt_name, shard_size
    )
    dimension = len(shards[0][0]["embedding"])
    index = faiss.index_factory(dimension, index_factory, faiss.METRIC_INNER_PRODUCT)
    if use_gpu:
        index = _to_gpu(index)
    if not index.is_trained:
        sample = np.sort(
            np.random.default_rng(seed).choice(len(corpus), min(train_size, len(corpus)), replace=False)
        )
        logger.info("Training %r on %d of %d vectors.", index_factory, len(sample), len(corpus))
        vectors = datasets.concatenate_datasets(shards)  # memory-mapped: only the sample is read
        index.train(np.asarray(vectors[sample]["embedding"], dtype=np.float32))
    if len(shards) > 1 and _is_ivf(index):
        index = _merge_on_disk(index, shards, index_path, use_gpu)
    else:
        for shard in shards:
            index.add(np.asarray(shard["embedding"], dtype=np.float32))
    _write(index, index_path)
    for folder in (f"{index_path}.embeddings", f"{index_path}.shards"):  # the index file now holds everything
        shutil.rmtree(folder, ignore_errors=True)
    logger.info("Indexed %d documents in %s.", index.ntotal, index_path)
    return index


def _merge_on_disk(trained, shards: list[datasets.Dataset], index_path: Path, use_gpu: bool):
    """One index file per shard (ids = corpus rows), then their inverted lists merged into `<index>.ivfdata`."""
    from faiss.contrib.ondisk import merge_ondisk

    faiss = _faiss()
    trained = faiss.index_gpu_to_cpu(trained) if use_gpu else trained
    folder = Path(f"{index_path}.shards")
    folder.mkdir(exist_ok=True)
    names, offset = [], 0
    for number, shard in enumerate(shards):
        path = folder / f"shard-{number:05d}.index"
        if not path.exists():
            part = faiss.clone_index(trained)
            part = _to_gpu(part) if use_gpu else part
            part.add_with_ids(
                np.asarray(shard["embedding"], dtype=np.float32), np.arange(offset, offset + len(shard))
            )
            _write(part, path)
        names.append(str(path))
        offset += len(shard)
    ivfdata = Path(f"{index_path}.ivfdata")
    ivfdata.unlink(missing_ok=True)
    merge_ondisk(trained, names, str(ivfdata))
    return trained


def search(index, queries: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-`k` neighbours of each query by inner product.

    Args:
        index: a FAISS index from `build_corpus_index`.
        queries: float32 [n, d], L2-normalised.
        k: neighbours per query; clamped (with a warning) to the number of indexed documents.
        nprobe: inverted lists visited per query (IVF indexes only; more is slower and more exact).

    Returns:
        (scores, ids), each [n, min(k, ntotal)], best first. An IVF index may find fewer than k documents in the
        lists it visits: those slots have id -1 (score -inf or the metric's worst) and the caller skips them.
    """
    if nprobe is not None:
        _faiss().ParameterSpace().set_index_parameter(index, "nprobe", nprobe)
    if k > index.ntotal:
        logger.warning(
            "top-%d asked of an index of %d documents: searching %d.", k, index.ntotal, index.ntotal
        )
        k = index.ntotal
    if k <= 0 or len(queries) == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def _normalise(text: str) -> list[str]:
    return _PUNCT.sub(" ", text.lower()).split()


def _shingles(words: list[str], size: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def is_near_duplicate(
    root_text: str, candidate_text: str, threshold: float = 0.3, shingle_words: int = 4
) -> bool:
    """Whether `candidate_text` is (nearly) a copy of `root_text`, contains one, or is (nearly) a passage of it.

    Both texts are lower-cased and stripped of punctuation. They are near-copies when the `shingle_words`-word
    shingles they share are at least `threshold` of the smaller text's shingles. When either text is shorter than
    a shingle, they are near-copies when one's normalised words contain the other's. An empty root (nothing but
    punctuation) has no copy.
    """
    root, candidate = _normalise(root_text), _normalise(candidate_text)
    if len(root) < shingle_words or len(candidate) < shingle_words:
        shorter, longer = sorted((f" {' '.join(root)} ", f" {' '.join(candidate)} "), key=len)
        return bool(shorter.strip()) and shorter in longer
    root_shingles, candidate_shingles = _shingles(root, shingle_words), _shingles(candidate, shingle_words)
    shared = len(root_shingles & candidate_shingles)
    return shared >= threshold * min(len(root_shingles), len(candidate_shingles))


def search_corpus(inputs, queries: list[str], k: int, settings: RetrievalSettings):
    """Embed `queries`, search the corpus index for 2k + 2 neighbours each (the extra hits absorb exclusions).

    Returns:
        (scores, ids) as `search` gives them, and `{corpus row: (id, text)}` for every row hit.
    """
    if not queries:
        return np.empty((0, 0)), np.empty((0, 0), np.int64), {}
    vectors = embed_texts(
        inputs.embedder, queries, batch_size=inputs.embed_batch_size, prompt_name=settings.query_prompt_name
    )
    scores, hits = search(inputs.index, vectors, 2 * k + 2, settings.nprobe)
    unique = sorted({int(i) for i in hits.ravel() if i >= 0})
    rows = inputs.corpus[unique] if unique else {"id": [], "text": []}
    return scores, hits, {i: (rows["id"][j], rows["text"][j]) for j, i in enumerate(unique)}


def exclusion(
    root_id: str, root_text: str, corpus_id: str, corpus_text: str, same_source: bool, threshold: float
) -> str | None:
    """Why a corpus document may not serve a root: "self" (its own row), "near_duplicate", or None (it may)."""
    if same_source and corpus_id == root_id:
        return "self"
    if is_near_duplicate(root_text, corpus_text, threshold=threshold):
        return "near_duplicate"
    return None


def eligible_neighbours(
    root_id, root_text, scores, hits, corpus_rows, k, same_source, threshold, taken=()
) -> tuple[list[tuple[int, str, float]], Counter]:
    """The first k eligible hits of a query, best first, as (corpus row, corpus id, similarity), and how many were
    excluded on the way, by reason (`exclusion`). Rows in `taken` (already used for the same root) are passed over
    without counting."""
    kept, excluded = [], Counter()
    for score, hit in zip(scores, hits, strict=True):
        if hit < 0 or len(kept) == k or hit in taken:
            continue
        corpus_id, corpus_text = corpus_rows[int(hit)]
        reason = exclusion(root_id, root_text, corpus_id, corpus_text, same_source, threshold)
        if reason:
            excluded[reason] += 1
        else:
            kept.append((int(hit), corpus_id, float(score)))
    return kept, excluded


def retrieve_candidates(batch: dict, settings: RetrievalSettings, inputs) -> dict:
    """The retrieval stage: the top-k corpus documents of every position, the root and its near-copies excluded."""
    queries = [position["query"] for positions in batch["positions"] for position in positions]
    out = {
        "retrieved": [],
        "num_excluded_self": [],
        "num_excluded_near_duplicate": [],
        "status": list(batch["status"]),
    }
    scores, hits, corpus_rows = search_corpus(inputs, queries, settings.top_k, settings)
    query_index = 0
    for row, (root_id, text, positions) in enumerate(
        zip(batch["id"], batch["text"], batch["positions"], strict=True)
    ):
        retrieved, excluded = [], Counter()
        for position in positions:
            kept, excluded_here = eligible_neighbours(
                root_id, text, scores[query_index], hits[query_index], corpus_rows, settings.top_k,
                inputs.same_source, settings.near_duplicate_threshold,
            )  # fmt: skip
            excluded.update(excluded_here)
            retrieved += [
                {"token_index": position["token_index"], "corpus_index": hit, "corpus_id": corpus_id,
                 "similarity": score}
                for hit, corpus_id, score in kept
            ]  # fmt: skip
            query_index += 1
        out["retrieved"].append(retrieved)
        out["num_excluded_self"].append(excluded["self"])
        out["num_excluded_near_duplicate"].append(excluded["near_duplicate"])
        if out["status"][row] == "ok" and not retrieved:
            out["status"][row] = "no_candidate"
    return out


RETRIEVED = {
    "token_index": datasets.Value("int32"),
    "corpus_index": datasets.Value("int64"),
    "corpus_id": datasets.Value("string"),
    "similarity": datasets.Value("float32"),
}
RETRIEVAL_STAGE = Stage(
    name="retrieval",
    settings=RetrievalSettings,
    inputs=("embedder", "embed_batch_size", "index", "corpus", "same_source"),
    columns={
        "retrieved": datasets.List(RETRIEVED),
        "num_excluded_self": datasets.Value("int32"),
        "num_excluded_near_duplicate": datasets.Value("int32"),
    },
    drop_reasons=("no_candidate",),
    function=retrieve_candidates,
    batch_size_setting="embed_batch_size",
)
