"""Long-context training data with model-verified long-range dependencies (EntropyLong).

In Python (a notebook, a script): `demo_config` gives the embedded default, offline on a CPU (the settings of
`recipes/build/demo.yaml`), as a `BuildConfig`; `build` runs one:

    from hf_entropylong import BuildConfig, build, demo_config

    counts = build(demo_config(output_dir="outputs/demo", num_roots=20))   # returns publish.counts.BuildCounts
    counts = build(BuildConfig(roots="my_roots.jsonl", corpus=["my_corpus.jsonl"], output_dir="outputs/mine"))

`BuildConfig`, `build` and `demo_config` (from `builder/`) are imported on first use, so `import hf_entropylong`
(and `hf-entropylong --version`) loads no model library.

Architecture (who owns what; README.md has the same map with a root's path through it):

- `settings.py` settings groups (fields with help, validation, output-neutral fields); `paths.py` the folders
  shipped in the package; `models.py` loading models and encoding documents; `sources.py` reading roots and corpus.
- `stages/` one module per EntropyLong stage (`entropy`, `retrieval`, `verify`, `units`) and the `Stage` record
  in `stages/__init__.py`; `stages/token_scores.py` the LM's per-token entropy and log-probability.
- `index/` the FAISS corpus index (`corpus_index`) and near-copy exclusion (`exclusion`).
- `methods/` one module per data recipe (`entropylong`, `noverify`, `concat`, `quest`, `nextlong`): its stages;
  `methods/__init__.py` maps a method's name to them.
- `builder/` the settings union (`config`), inputs and cache keys (`inputs`), the sharded, resumable, multi-rank
  runner and the publish flow (`runner`), and where it runs (`executors`; datatrove's pipelines: `pipelines`).
- `publish/` packing, counts, the written folder, the card, the plots, the schema version.
- `report.py` the HTML report; `cli.py` the `hf-entropylong` command; `train/` and `eval/` training and evaluation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

__all__ = ["BuildConfig", "__version__", "build", "demo_config"]

if TYPE_CHECKING:
    from .builder import BuildConfig, build, demo_config


def __getattr__(name: str) -> Any:
    if name in ("BuildConfig", "build", "demo_config"):
        from . import builder

        return getattr(builder, name)
    raise AttributeError(f"module 'hf_entropylong' has no attribute {name!r}")
