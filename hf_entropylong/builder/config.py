"""The build's settings: `BuildConfig`, the flat union of every settings group, and the embedded demo's.

Each group lives beside the code that reads it (`sources`, `models`, each stage in `stages/`, each method in
`methods/`, the corpus index in `index/`, packing and publishing in `publish/`); `BuildConfig` inherits them all, so
a recipe is one flat YAML and every field is one flag. `RunSettings` (how the build runs) lives here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import yaml

from ..index.corpus_index import IndexSettings, SearchSettings
from ..index.exclusion import ExclusionSettings
from ..methods import MethodSettings
from ..methods.nextlong import NExtLongSettings
from ..methods.quest import QuestSettings
from ..models import EmbedderSettings, LMSettings
from ..paths import RECIPES_DIR
from ..publish.packing import PackSettings
from ..publish.writer import OutputSettings
from ..settings import require_non_negative, require_positive, setting
from ..sources import CorpusSettings, RootSettings
from ..stages.entropy import EntropySettings
from ..stages.retrieval import RetrievalSettings
from ..stages.units import UnitSettings
from ..stages.verify import VerifySettings

DEMO_RECIPE = RECIPES_DIR / "build" / "demo.yaml"


@dataclass
class RunSettings:
    """How the build runs."""

    output_neutral: ClassVar[tuple[str, ...]] = ("shard_size", "cache_dir", "trust_remote_code")

    seed: int = setting(
        42,
        help="Seed of the root sample, the index training sample, each unit's shuffle and the row shuffle.",
    )
    shard_size: int = setting(256, help="Roots per resumable, cached shard (the unit of work of a rank).")
    cache_dir: str | None = setting(
        None,
        help="Folder of the stage caches and the index (default: <output_dir>/.cache). Builds that share it reuse "
        "each other's index and common stages (e.g. one build per method on the same inputs).",
    )
    trust_remote_code: bool = setting(
        False, help="Run model code from the model's repository (jina-embeddings-v3 needs it)."
    )

    def __post_init__(self):
        require_positive(self, "shard_size")
        require_non_negative(self, "seed")


SETTINGS_GROUPS: tuple[type, ...] = (
    MethodSettings,
    RootSettings,
    CorpusSettings,
    LMSettings,
    EmbedderSettings,
    EntropySettings,
    IndexSettings,
    SearchSettings,
    ExclusionSettings,
    RetrievalSettings,
    VerifySettings,
    UnitSettings,
    PackSettings,
    QuestSettings,
    NExtLongSettings,
    RunSettings,
    OutputSettings,
)


@dataclass
class BuildConfig(*reversed(SETTINGS_GROUPS)):
    """Settings of an EntropyLong build: the fields of every settings group, flat (one YAML, one flag each).

    Defaults are the paper's; `recipes/build/` holds complete recipes. Each group lives beside the code that reads
    it: `sources.RootSettings` / `CorpusSettings`, `models.LMSettings` / `EmbedderSettings`, and the settings of
    each stage (`entropy`, `retrieval`, `verify`, `pack`), the run and the output.
    """

    def __post_init__(self):
        for group in SETTINGS_GROUPS:
            validate = vars(group).get("__post_init__")
            if validate is not None:
                validate(self)


def demo_config(**overrides: Any) -> BuildConfig:
    """The embedded-default `BuildConfig` (CPU, offline): the settings of `recipes/build/demo.yaml`, with `overrides`.

    Args:
        **overrides: any `BuildConfig` field, e.g. `output_dir="outputs/demo"`, `num_roots=20`.
    """
    settings = yaml.safe_load(DEMO_RECIPE.read_text(encoding="utf-8"))
    return BuildConfig(**{**settings, **overrides})
