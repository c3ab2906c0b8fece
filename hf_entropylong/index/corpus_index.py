"""The corpus index: embeddings of every corpus document in a FAISS index, built once, searched by every rank.

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
index depends on (corpus, embedder and its prompt, factory); the caller picks it (`builder.inputs.stage_keys`).

Search. `search_corpus` embeds a batch of queries and asks the index for 2k + 2 neighbours each: the hits past
k absorb the exclusions (`index.exclusion`) that follow.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import datasets
import numpy as np

from ..settings import require_positive, setting

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
class SearchSettings:
    """How the corpus index is searched (by the retrieval stage and by NExtLong's negatives)."""

    query_prompt_name: str | None = setting(
        None, help="Embedder prompt for queries (jina-embeddings-v3: retrieval.query)."
    )
    nprobe: int | None = setting(
        None, help="Inverted lists visited per query (IVF indexes; more is slower and more exact)."
    )

    def __post_init__(self):
        require_positive(self, "nprobe")


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


def search_corpus(inputs, queries: list[str], k: int, settings: SearchSettings, index=None, documents=None):
    """Embed `queries`, search the corpus index for 2k + 2 neighbours each (the extra hits absorb exclusions).

    `index` and `documents` (default: the inputs' `index` and `corpus`) name another index and the rows its ids
    point to (NExtLong's chunk index and chunk dataset).

    Returns:
        (scores, ids) as `search` gives them, and `{corpus row: (id, text)}` for every row hit.
    """
    if not queries:
        return np.empty((0, 0)), np.empty((0, 0), np.int64), {}
    vectors = embed_texts(
        inputs.embedder, queries, batch_size=inputs.embed_batch_size, prompt_name=settings.query_prompt_name
    )
    index = inputs.index if index is None else index
    documents = inputs.corpus if documents is None else documents
    scores, hits = search(index, vectors, 2 * k + 2, settings.nprobe)
    unique = sorted({int(i) for i in hits.ravel() if i >= 0})
    rows = documents.select_columns(["id", "text"])[unique] if unique else {"id": [], "text": []}
    return scores, hits, {i: (rows["id"][j], rows["text"][j]) for j, i in enumerate(unique)}
