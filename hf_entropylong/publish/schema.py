"""The version of the published tables' schema, and the names an older build's tables use.

Version 2 names what a method placed honestly: `contexts` (each with `verified`: ΔI measured and ≥ ε, true for
EntropyLong's and false for a baseline's placed documents) and the candidates' decision `kept`. Version 1 builds
(no `schema_version` in `stats.json`) called them `verified_contexts` and `candidates[].verified` whatever the
method; they still load (`load_dataset` reads any version), and the report and plots read them through
`published_names`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

SCHEMA_VERSION = 2


class PublishedNames(NamedTuple):
    """The names, in one build's tables, of the placed documents' column and of the candidates' decision."""

    version: int
    contexts: str
    kept: str


NAMES = {1: PublishedNames(1, "verified_contexts", "verified"), 2: PublishedNames(2, "contexts", "kept")}


def published_names(folder: Path) -> PublishedNames:
    """The names used by the build published in `folder` (read from its `stats.json`)."""
    stats = folder / "stats.json"
    version = json.loads(stats.read_text()).get("schema_version", 1) if stats.is_file() else SCHEMA_VERSION
    if version not in NAMES:
        raise ValueError(
            f"{folder} was published with schema version {version}, newer than this hf_entropylong reads "
            f"({SCHEMA_VERSION}): upgrade hf_entropylong."
        )
    return NAMES[version]
