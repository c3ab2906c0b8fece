"""Dense retrieval of candidate contexts: query windows, embeddings, a FAISS index, and exclusion of copies.

The query for a high-entropy token is the token's word with the `w` whitespace-separated words on each side
(w = 16), cut from the root text through the token's character span. Queries and corpus documents are embedded
by a sentence-transformers model, L2-normalised, so inner product is cosine similarity, and searched in a FAISS
index built by `faiss.index_factory` ("Flat" for exact search; "IVF…,PQ…" trained on a sample for large
corpora, added shard by shard). The index is written to disk and reused when its file exists.

The root itself and near-copies of it must never be candidates (prepending a copy trivially lowers entropy):
a candidate is a near-copy when at least `threshold` of the root's word 8-shingles occur in it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import datasets
import numpy as np

logger = logging.getLogger(__name__)

_WORD = re.compile(r"\S+")
_PUNCT = re.compile(r"[^\w\s]")


def query_window(text: str, char_start: int, char_end: int, words_each_side: int = 16) -> str:
    """The words overlapping [char_start, char_end) and `words_each_side` words before and after them."""
    words = list(_WORD.finditer(text))
    if not words:
        return ""
    start = max(char_start, 0)
    end = max(char_end, start + 1)
    touching = [i for i, w in enumerate(words) if w.start() < end and w.end() > start]
    if touching:
        first, last = touching[0], touching[-1]
    else:  # a whitespace token: the words on either side
        first = last = next((i for i, w in enumerate(words) if w.start() >= end), len(words) - 1)
    chosen = words[max(0, first - words_each_side) : last + words_each_side + 1]
    return " ".join(w.group() for w in chosen)


def embed_texts(
    embedder,
    texts: list[str],
    batch_size: int = 64,
    prompt_name: str | None = None,
    show_progress_bar: bool = False,
) -> np.ndarray:
    """float32 [N, d] L2-normalised embeddings (cosine similarity = inner product)."""
    vectors = embedder.encode(
        texts,
        batch_size=batch_size,
        prompt_name=prompt_name,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=show_progress_bar,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _faiss():
    import faiss

    return faiss


def _to_gpu(index):
    faiss = _faiss()
    if not hasattr(faiss, "index_cpu_to_all_gpus") or faiss.get_num_gpus() == 0:
        raise RuntimeError(
            "index_on_gpu needs a CUDA build of FAISS and a GPU: `pip install -e '.[gpu]'` installs faiss-gpu-cu12 "
            "(uninstall faiss-cpu first)."
        )
    return faiss.index_cpu_to_all_gpus(index)


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
    """Embed `corpus` and build (or load, when `index_path` exists) an inner-product FAISS index over it.

    The caller names `index_path` after the corpus, embedder and factory. Embeddings are computed by a batched
    `Dataset.map`, so an interrupted embedding resumes from datasets' cache. Row i of the corpus is id i.
    """
    faiss = _faiss()
    index_path = Path(index_path)
    if index_path.exists():
        index = faiss.read_index(str(index_path))
        return _to_gpu(index) if use_gpu else index

    def embed(batch):
        return {"embedding": embed_texts(embedder, batch[text_column], batch_size, prompt_name)}

    vectors = corpus.select_columns([text_column]).map(
        embed,
        batched=True,
        batch_size=batch_size * 16,
        remove_columns=[text_column],
        new_fingerprint=f"{corpus._fingerprint}-embed-{index_path.stem}",
        desc="Embedding corpus",
    )
    vectors = vectors.with_format("numpy")
    dimension = len(vectors[0]["embedding"])
    index = faiss.index_factory(dimension, index_factory, faiss.METRIC_INNER_PRODUCT)
    if use_gpu:
        index = _to_gpu(index)
    if not index.is_trained:
        sample = np.random.default_rng(seed).choice(
            len(vectors), size=min(train_size, len(vectors)), replace=False
        )
        index.train(np.asarray(vectors[np.sort(sample)]["embedding"], dtype=np.float32))
    for start in range(0, len(vectors), shard_size):
        index.add(np.asarray(vectors[start : start + shard_size]["embedding"], dtype=np.float32))
    if use_gpu:
        index = faiss.index_gpu_to_cpu(index)
    index_path.parent.mkdir(parents=True, exist_ok=True)
    partial = index_path.with_suffix(".partial")
    faiss.write_index(index, str(partial))
    partial.rename(index_path)
    return _to_gpu(index) if use_gpu else index


def search(index, queries: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-`k` (scores, corpus row ids) per query; k is clamped to the index size, and missing hits are -1."""
    if nprobe is not None:
        _faiss().ParameterSpace().set_index_parameter(index, "nprobe", nprobe)
    if k > index.ntotal:
        logger.warning(
            "top-%d asked of an index of %d documents: searching %d.", k, index.ntotal, index.ntotal
        )
        k = index.ntotal
    if k == 0 or len(queries) == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def _normalise(text: str) -> list[str]:
    return _PUNCT.sub(" ", text.lower()).split()


def is_near_duplicate(
    root_text: str, candidate_text: str, threshold: float = 0.5, shingle_words: int = 8
) -> bool:
    """True when at least `threshold` of the root's word shingles occur in the candidate.

    Texts shorter than a shingle are near-duplicates when one's normalised words contain the other's.
    """
    root, candidate = _normalise(root_text), _normalise(candidate_text)
    if len(root) < shingle_words or len(candidate) < shingle_words:
        shorter, longer = sorted((" ".join(root), " ".join(candidate)), key=len)
        return bool(shorter) and shorter in longer
    root_shingles = {tuple(root[i : i + shingle_words]) for i in range(len(root) - shingle_words + 1)}
    candidate_shingles = {
        tuple(candidate[i : i + shingle_words]) for i in range(len(candidate) - shingle_words + 1)
    }
    return len(root_shingles & candidate_shingles) / len(root_shingles) >= threshold
