"""What the stages read besides their own settings (`BuildInputs`), what each input is, and the stages' cache keys.

`BuildInputs` loads the models, the corpus index and the rest lazily, once per process, on the rank's device: a
stage whose shards are all cached loads nothing. Two indexes can be searched: `index` over the corpus documents
(EntropyLong's retrieval, NoVerify) and `chunk_index` over `chunks`, the corpus cut into NExtLong's meta-chunks
(a row per chunk: its document's id and row, its character offset), both built by `index.corpus_index` and cached
in the cache folder under their key. `input_identities` says what each input is (a model by its
weights, the corpus by its sources' fingerprints, the index by what it is built from), and `stage_keys` chains
them into each stage's cache key: hash(previous stage's key, the stage's output-relevant settings, the identities
of the inputs it declares, its columns, the package version).
"""

from __future__ import annotations

import functools
from pathlib import Path

import datasets
from datasets.fingerprint import Hasher

from .. import models
from .._version import __version__
from ..files import cache_is_sound
from ..index.corpus_index import (
    IndexSettings,
    build_corpus_index,
    embed_corpus_shards,
    embedding_dimension,
    load_index,
    new_index,
    num_corpus_shards,
)
from ..index.gpu_placement import (
    GIB,
    IndexPlacement,
    NodeGpus,
    index_file_bytes,
    plan_placement,
    require_gpu_faiss,
)
from ..methods import stages_of
from ..methods.nextlong import ChunkSettings, chunk_corpus
from ..models import EmbedderSettings, LMSettings, context_window, model_identity
from ..settings import output_settings, settings_of
from ..sources import CorpusSettings, RootSettings
from .config import BuildConfig


# Models are loaded once per process and device, lazily: a stage whose shards are all cached loads nothing.
@functools.cache
def _tokenizer(name: str):
    return models.load_tokenizer(name)


@functools.cache
def _lm(name: str, dtype: str, device: str | None, attn_implementation: str | None, trust_remote_code: bool):
    return models.load_causal_lm(
        name,
        dtype=dtype,
        device=device,
        attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code,
    )


@functools.cache
def _embedder(name: str, device: str | None, max_seq_length: int | None, trust_remote_code: bool):
    embedder = models.load_embedder(name, device=device, trust_remote_code=trust_remote_code)
    if max_seq_length:
        embedder.max_seq_length = max_seq_length
    return embedder


@functools.cache
def _index(path: str, placement: IndexPlacement | None, node: NodeGpus | None):
    return load_index(path, placement, node)


def same_source(config: BuildConfig) -> bool:
    """Roots drawn from the corpus itself: a root's own id then marks it among the candidates."""
    return config.corpus == [config.roots]


INDEXES = ("index", "chunk_index")
"""The inputs that are FAISS indexes (a stage declaring one makes the build embed and index its rows first)."""


class BuildInputs:
    """What the stages read besides their own settings, loaded lazily once per process on its device.

    Args:
        config: the build's settings.
        corpus: the corpus documents.
        cache_dir: where the indexes and the chunk dataset are cached.
        keys: `stage_keys`' keys (`index`, `chunks`, `chunk_index` name the cached files).
        device: the rank's device (None: the CPU).
    """

    def __init__(
        self,
        config: BuildConfig,
        corpus: datasets.Dataset,
        cache_dir: Path,
        keys: dict[str, str],
        device: str | None = None,
    ):
        self.config, self.corpus, self._device = config, corpus, device
        self.cache_dir, self.keys = Path(cache_dir), keys
        self.node: NodeGpus | None = None  # this rank's node (index_on_gpu), set by the runner
        self.placement: IndexPlacement | None = None  # the job's plan for the document index; None: the CPU

    @property
    def device(self) -> str | None:
        """The rank's device (None: the CPU)."""
        return self._device

    @property
    def tokenizer(self):
        return _tokenizer(self.config.lm)

    @property
    def lm(self):
        config = self.config
        return _lm(
            config.lm, config.lm_dtype, self.device, config.attn_implementation, config.trust_remote_code
        )

    @property
    def lm_window(self) -> int:
        return self.config.lm_max_length or context_window(self.lm)

    @property
    def embedder(self):
        config = self.config
        return _embedder(
            config.embedder, self.device, config.embedder_max_seq_length, config.trust_remote_code
        )

    @property
    def embed_batch_size(self) -> int:
        return self.config.embed_batch_size

    def _embedding_settings(self) -> dict:
        config = self.config
        return {
            "batch_size": config.embed_batch_size,
            "prompt_name": config.document_prompt_name,
            "shard_size": config.index_shard_size,
        }

    def index_path(self, name: str = "index") -> Path:
        """The file of the index `name` (one of `INDEXES`; its key tells the two apart)."""
        return self.cache_dir / f"index-{self.keys[name]}.faiss"

    def _indexed_rows(self, name: str) -> datasets.Dataset:
        return self.corpus if name == "index" else self.chunks

    def embed_rows(self, name: str, rank: int, world: int) -> None:
        """Embed this rank's share of the shards of index `name` (those whose number is `rank` modulo `world`)."""
        rows = self._indexed_rows(name)
        shards = range(rank, num_corpus_shards(rows, self.config.index_shard_size), world)
        embed_corpus_shards(
            rows, self.embedder, self.index_path(name), shards=list(shards), **self._embedding_settings()
        )

    def check_index_factory(self) -> None:
        """Refuse an `index_factory` FAISS cannot make for the embedder's dimension, before anything is embedded."""
        dimension = embedding_dimension(self.embedder)
        if dimension:
            new_index(dimension, self.config.index_factory)

    def build_index(self, name: str = "index") -> None:
        """Embed what no rank embedded yet and write the index `name`, unless a sound index file exists."""
        if cache_is_sound(self.index_path(name)):
            return
        config = self.config
        build_corpus_index(
            self._indexed_rows(name),
            self.embedder,
            index_path=self.index_path(name),
            index_factory=config.index_factory,
            use_gpu=config.index_on_gpu,
            train_size=config.index_train_size,
            seed=config.seed,
            **self._embedding_settings(),
        )

    def plan_index_placement(self, node: NodeGpus) -> IndexPlacement:
        """Copy per rank, shard over the node or CPU for the written index on `node` (`index.gpu_placement`)."""
        if not self.config.index_on_gpu:
            return IndexPlacement("cpu", reason="index_on_gpu is off: searching the index on the CPU.")
        require_gpu_faiss()
        reserve = int(self.config.index_gpu_reserve_gib * GIB)
        return plan_placement(index_file_bytes(self.index_path("index")), node, reserve)

    @property
    def index(self):
        self.build_index("index")
        return _index(str(self.index_path("index")), self.placement, self.node)

    @property
    def chunks(self) -> datasets.Dataset:
        """The corpus cut into NExtLong's meta-chunks, one row per chunk (cached under its key)."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        return self.corpus.map(
            chunk_corpus,
            batched=True,
            with_indices=True,
            fn_kwargs={"settings": settings_of(self.config, ChunkSettings)},
            remove_columns=self.corpus.column_names,
            features=datasets.Features(
                {
                    "id": datasets.Value("string"),
                    "text": datasets.Value("string"),
                    "document_index": datasets.Value("int64"),
                    "char_start": datasets.Value("int64"),
                }
            ),
            cache_file_name=str(self.cache_dir / f"chunks-{self.keys['chunks']}.arrow"),
            new_fingerprint=self.keys["chunks"],
            desc="Chunking the corpus",
        )

    @property
    def chunk_index(self):
        self.build_index("chunk_index")
        return _index(str(self.index_path("chunk_index")), None, None)  # searched on the CPU

    @property
    def max_seq_length(self) -> int:
        return self.config.max_seq_length

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def same_source(self) -> bool:
        return same_source(self.config)


def input_identities(config: BuildConfig, corpus_identity: str) -> dict[str, object]:
    """The identity of each `BuildInputs` attribute: what, when it changes, reruns the stages that read it.

    Output-neutral inputs have the identity `None`. The corpus is its sources' identities (`sources.SourceCounts`)
    and its settings; the index, what it is built from; a model, its weights (`models.model_identity`) and its
    output-relevant settings.
    """
    weights = model_identity(config.lm)
    lm = (weights, output_settings(settings_of(config, LMSettings)))
    embedder = (model_identity(config.embedder), output_settings(settings_of(config, EmbedderSettings)))
    corpus = (corpus_identity, output_settings(settings_of(config, CorpusSettings)))
    index_settings = (embedder, output_settings(settings_of(config, IndexSettings)), config.seed)
    chunks = (corpus, output_settings(settings_of(config, ChunkSettings)))
    return {
        "tokenizer": weights,
        "lm": lm,
        "lm_window": lm,
        "embedder": embedder,
        "embed_batch_size": None,
        "device": None,
        "corpus": corpus,
        "index": (corpus, *index_settings),
        "chunks": chunks,
        "chunk_index": (chunks, *index_settings),
        "max_seq_length": config.max_seq_length,
        "seed": config.seed,
        "same_source": same_source(config),
    }


def _fingerprint(*parts) -> str:
    return Hasher.hash(parts)[:16]


def stage_keys(config: BuildConfig, roots_identity: str, corpus_identity: str) -> dict[str, str]:
    """The cache keys of the indexes, the chunk dataset and every stage, chained from the roots' identity and
    settings."""
    identities = input_identities(config, corpus_identity)
    keys = {name: _fingerprint(name, identities[name]) for name in (*INDEXES, "chunks")}
    key = _fingerprint(
        "roots", roots_identity, output_settings(settings_of(config, RootSettings)), config.seed
    )
    for stage in stages_of(config.method):
        undeclared = set(stage.inputs) - set(identities)
        if undeclared:
            raise KeyError(f"stage {stage.name!r} reads inputs with no identity: {sorted(undeclared)}")
        key = _fingerprint(
            stage.name,
            key,
            output_settings(settings_of(config, stage.settings)),
            {name: identities[name] for name in stage.inputs},
            __version__,
            stage.columns,  # a cache written with another schema is never read back
        )
        keys[stage.name] = key
    return keys
