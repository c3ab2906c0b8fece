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

The factory is made by FAISS for the embedder's dimension before anything is embedded, so a factory FAISS cannot
make fails at once. The index is written to `index_path` with its checksum beside it (`files.record_checksum`), and
loaded from it when the file exists and matches that checksum (a damaged file is set aside and the index built
again): the path must name everything the index depends on (corpus, embedder and its prompt, factory); the caller
picks it (`builder.inputs.stage_keys`). Embedding shards are checked the same way before they are reused.

Placement (`index_on_gpu`, `gpu_placement`): a copy on each rank's GPU when one fits, else sharded over the
node's GPUs and searched by the node's main process, else the CPU with the memory it would need in the log; a
merged on-disk index goes through host memory to the GPUs.

Search. `search_corpus` embeds a batch of queries and asks the index for 2k + 2 neighbours each: the hits past
k absorb the exclusions (`index.exclusion`) that follow.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import datasets
import numpy as np

from ..files import cache_is_sound, cached_map, record_checksum
from ..settings import require_positive, setting
from .gpu_placement import IndexPlacement, NodeGpus, place_index, require_gpu_faiss
from .gpu_placement import faiss_module as _faiss

logger = logging.getLogger(__name__)


@dataclass
class IndexSettings:
    """The FAISS index over the corpus embeddings."""

    output_neutral: ClassVar[tuple[str, ...]] = ("index_shard_size", "index_on_gpu", "index_gpu_reserve_gib")

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
    index_on_gpu: bool = setting(
        False,
        help="Build and search the index on the GPUs (faiss-gpu): a copy on each rank's GPU when it fits, else "
        "sharded over the node's GPUs, else on the CPU with the memory it would need in the log.",
    )
    index_gpu_reserve_gib: float = setting(
        24.0, help="GPU memory (GiB) left free for the LM stages when placing the index (index_on_gpu)."
    )

    def __post_init__(self):
        require_positive(self, "index_train_size", "index_shard_size")
        if not 0 <= self.index_gpu_reserve_gib < math.inf:
            raise ValueError(
                f"index_gpu_reserve_gib must be >= 0 and finite, got {self.index_gpu_reserve_gib}."
            )


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


def _to_gpu(index):
    """The index replicated on every visible GPU: how the one process that builds it trains and fills it."""
    require_gpu_faiss()
    return _faiss().index_cpu_to_all_gpus(index)


def _is_ivf(index) -> bool:
    try:
        _faiss().extract_index_ivf(index)
    except RuntimeError:
        return False
    return True


def _write(index, path: Path) -> None:
    """Write atomically (a killed write never leaves a file that looks finished), and record its checksum."""
    faiss = _faiss()
    partial = path.with_name(path.name + ".partial")
    faiss.write_index(
        faiss.index_gpu_to_cpu(index) if hasattr(faiss, "index_gpu_to_cpu") else index, str(partial)
    )
    partial.replace(path)
    record_checksum(path)


def embedding_dimension(embedder) -> int | None:
    """The embedder's vector size, when it declares one (sentence-transformers 6 and 5 name it differently)."""
    for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        if hasattr(embedder, name):
            return getattr(embedder, name)()
    return None


def new_index(dimension: int, factory: str):
    """An empty inner-product index from `faiss.index_factory`; a factory FAISS cannot make is one ValueError."""
    faiss = _faiss()
    try:
        return faiss.index_factory(dimension, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as error:
        reason = str(error).rsplit(": ", 1)[-1].strip()
        raise ValueError(
            f"index_factory {factory!r} is not a FAISS index for the embedder's {dimension}-dimensional vectors "
            f"({reason}); give a faiss.index_factory string such as Flat or IVF4096,SQ8."
        ) from None


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
            cached_map(
                rows,
                folder / f"{name}.arrow",
                function=embed,
                batched=True,
                batch_size=batch_size * 16,
                remove_columns=[text_column],
                new_fingerprint=f"{folder.name}-{name}",
                desc=f"Embedding corpus ({shard + 1}/{num_shards})",
            )[0].with_format("numpy")
        )
    return done


def load_index(index_path: str | Path, placement: IndexPlacement | None = None, node: NodeGpus | None = None):
    """Read a saved index and place it as `placement` says (`gpu_placement.plan_placement`): on this rank's GPU,
    sharded over the node's GPUs (an on-disk index's lists are read into memory first), or on the CPU (None)."""
    index = _faiss().read_index(str(index_path))
    if placement is None or placement.kind == "cpu":
        return index
    return place_index(index, placement, node)


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
        use_gpu: train and fill the index on all GPUs (a CUDA build of FAISS: the `[gpu]` extra).
        shard_size: documents per embedding/indexing shard.
        train_size: vectors sampled to train factories that need training (IVF, PQ).
        seed: seed of the training sample.

    Returns:
        The FAISS index, in host memory (`load_index` places a saved one on GPUs).
    """
    faiss = _faiss()
    index_path = Path(index_path)
    if use_gpu:
        require_gpu_faiss()  # fail before any embedding
    if cache_is_sound(index_path):
        return load_index(index_path)
    if len(corpus) == 0:
        raise ValueError("cannot index an empty corpus.")
    dimension = embedding_dimension(embedder)
    if dimension:
        new_index(dimension, index_factory)  # a factory FAISS cannot make fails before any embedding
    index_path.parent.mkdir(parents=True, exist_ok=True)
    shards = _embed_shards(
        corpus, embedder, text_column, Path(f"{index_path}.embeddings"), batch_size, prompt_name, shard_size
    )
    index = new_index(len(shards[0][0]["embedding"]), index_factory)
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
    index = faiss.index_gpu_to_cpu(index) if use_gpu else index
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
        if not cache_is_sound(path):
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
    if nprobe is not None:  # a GPU build's parameter space also reaches GPU indexes (and their shards)
        faiss = _faiss()
        space = faiss.GpuParameterSpace() if hasattr(faiss, "GpuParameterSpace") else faiss.ParameterSpace()
        space.set_index_parameter(index, "nprobe", nprobe)
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
