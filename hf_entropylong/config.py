"""Settings of an EntropyLong build, and the schema of what each stage adds to a root's row."""

from __future__ import annotations

from dataclasses import dataclass, field

import datasets

STATUSES = ("ok", "root_too_long", "no_high_entropy_position", "no_candidate", "no_verified_context")

_INT, _LONG, _FLOAT, _STR = (datasets.Value(t) for t in ("int32", "int64", "float32", "string"))
POSITION = {
    "token_index": _INT,
    "char_start": _INT,
    "char_end": _INT,
    "token": _STR,
    "entropy": _FLOAT,
    "query": _STR,
}
RETRIEVED = {"token_index": _INT, "corpus_index": _LONG, "corpus_id": _STR, "similarity": _FLOAT}
CANDIDATE = {
    **RETRIEVED,
    "entropy_with_context": _FLOAT,
    "delta_i": _FLOAT,
    "verified": datasets.Value("bool"),
}
VERIFIED = {"corpus_index": _LONG, "corpus_id": _STR, "delta_i": _FLOAT, "token_indices": datasets.List(_INT)}
STAGE_FEATURES = {
    "entropy": {
        "num_tokens": _LONG,
        "entropy_mean": _FLOAT,
        "entropy_std": _FLOAT,
        "positions": datasets.List(POSITION),
        "status": _STR,
    },
    "retrieval": {
        "retrieved": datasets.List(RETRIEVED),
        "num_excluded_self": _INT,
        "num_excluded_near_duplicate": _INT,
    },
    "verify": {"candidates": datasets.List(CANDIDATE), "verified_contexts": datasets.List(VERIFIED)},
    "units": {
        "unit_input_ids": datasets.List(_LONG),
        "unit_context_ids": datasets.List(_STR),
        "num_contexts_trimmed": _INT,
    },
}


@dataclass
class BuildConfig:
    """Settings of an EntropyLong build. Defaults are the paper's; `recipes/build/` holds complete recipes."""

    # Sources
    roots: str = field(
        default="HuggingFaceFW/fineweb-edu::sample-10BT",
        metadata={"help": "Roots: Hub id[::config], local file/folder, or embedded:wiki-summaries."},
    )
    roots_split: str = "train"
    roots_text_column: str = "text"
    roots_id_column: str | None = "id"
    num_roots: int | None = field(
        default=100_000, metadata={"help": "Roots sampled (seeded) from the source; all when unset."}
    )
    corpus: list[str] = field(
        default_factory=lambda: [
            "HuggingFaceFW/fineweb-edu::sample-10BT",
            "HuggingFaceTB/cosmopedia::web_samples_v2",
        ],
        metadata={"help": "One or more corpus sources, concatenated."},
    )
    corpus_split: str = "train"
    corpus_text_column: str = "text"
    corpus_id_column: str | None = "id"
    # Models
    lm: str = "meta-llama/Meta-Llama-3-8B"
    lm_dtype: str = field(default="bfloat16", metadata={"help": "float32 is faster on most CPUs."})
    attn_implementation: str | None = None
    lm_max_length: int | None = field(
        default=None, metadata={"help": "LM window; default: the model's max_position_embeddings."}
    )
    embedder: str = "jinaai/jina-embeddings-v3"
    embedder_max_seq_length: int | None = None
    query_prompt_name: str | None = None
    document_prompt_name: str | None = None
    trust_remote_code: bool = False
    # Method (the paper's values)
    alpha: float = field(default=2.0, metadata={"help": "High entropy: H_t > mean + alpha * std."})
    min_left_context: int = field(
        default=4,
        metadata={
            "help": "Skip the root's first N text tokens: predicted from almost nothing, their entropy is high in "
            "every document and any prepended text lowers it (0 = the paper's plain rule)."
        },
    )
    max_positions_per_root: int | None = field(
        default=None, metadata={"help": "Keep only the highest-entropy positions."}
    )
    window_words: int = field(default=16, metadata={"help": "Query words on each side of the position."})
    top_k: int = 5
    epsilon: float = field(default=0.4, metadata={"help": "Keep a candidate when ΔI >= epsilon."})
    near_duplicate_threshold: float = field(
        default=0.5, metadata={"help": "Share of root shingles that marks a near-copy."}
    )
    order: str = field(default="shuffle", metadata={"help": "shuffle | sequence"})
    max_seq_length: int = 131_072
    min_row_fill: float = field(
        default=0.5,
        metadata={
            "help": "Drop packed rows whose units fill less than this share (the last rows of a packing)."
        },
    )
    # Index
    index_factory: str = field(
        default="Flat", metadata={"help": "faiss.index_factory string, e.g. IVF32768,PQ256."}
    )
    nprobe: int | None = None
    index_on_gpu: bool = False
    index_train_size: int = field(
        default=262_144, metadata={"help": "Vectors sampled to train an IVF index."}
    )
    index_shard_size: int = field(
        default=1_000_000, metadata={"help": "Vectors per shard; IVF shards merge on disk."}
    )
    # Compute
    entropy_batch_size: int = 8
    verify_batch_size: int = 8
    embed_batch_size: int = 64
    logits_chunk_size: int = 1024
    shard_size: int = field(default=256, metadata={"help": "Roots per resumable shard."})
    num_proc: int | None = field(
        default=None, metadata={"help": "Processes for the LM stages (one per GPU)."}
    )
    seed: int = 42
    # Output
    output_dir: str = "outputs/entropylong"
    dataset_license: str = field(default="odc-by", metadata={"help": "Licence of the sources, for the card."})
    pretty_name: str | None = None
    push_to_hub: bool = False
    hub_repo_id: str | None = None
    hub_private: bool = False

    def __post_init__(self):
        if isinstance(self.corpus, str):
            self.corpus = [self.corpus]
        if self.order not in ("shuffle", "sequence"):
            raise ValueError(f"order must be 'shuffle' or 'sequence', got {self.order!r}.")
        if not 0 < self.epsilon <= 1:
            raise ValueError(f"epsilon must be in (0, 1], got {self.epsilon}.")
        if self.top_k < 1 or self.window_words < 1 or self.max_seq_length < 2:
            raise ValueError("top_k, window_words and max_seq_length must be positive.")
        if not 0 <= self.min_row_fill <= 1:
            raise ValueError(f"min_row_fill must be in [0, 1], got {self.min_row_fill}.")
        if self.push_to_hub and not self.hub_repo_id:
            raise ValueError("--push_to_hub needs --hub_repo_id ORG/NAME.")
