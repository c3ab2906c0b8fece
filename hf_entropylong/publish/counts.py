"""What a build kept and dropped, counted from its published tables: the summary, `stats.json` and the headline.

`BuildCounts.from_tables` recounts everything from the per-root table (`dependencies`) and the packed rows, so the
numbers on the card, in `stats.json`, in the command's summary and in `hf-entropylong report` are one count.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

import datasets
import numpy as np

from ..sources import SourceCounts
from .packing import packing_stats


@dataclass
class BuildCounts:
    """What every stage kept and dropped, and why: read by the summary, the dataset card and the tests.

    For a baseline (`method`), positions count only those with an entropy (its keywords and meta-chunks are not
    high-entropy positions), "verified" means placed, and ΔI is averaged where it was computed.
    """

    method: str
    roots_read: int
    roots_empty: int
    roots: int
    roots_by_status: dict[str, int]
    corpus_documents: int
    corpus_empty: int
    high_entropy_positions: int
    candidates_excluded_self: int
    candidates_excluded_near_duplicate: int
    candidates_tried: int
    distinct_candidates_tried: int
    verified_dependencies: int
    verified_contexts: int
    mean_delta_i: float | None
    contexts_trimmed_for_length: int
    units: int
    units_left_over: int
    sequences: int
    tokens: int
    padding_tokens: int
    mean_dependency_distance: float | None
    seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_tables(
        cls,
        method: str,
        statuses: tuple[str, ...],
        root_counts: SourceCounts,
        corpus_counts: list[SourceCounts],
        dependencies: datasets.Dataset,
        packed: datasets.Dataset | None,
        units_left_over: int,
    ) -> BuildCounts:
        """Counts from the per-root rows (`dependencies`) and the packed rows; `statuses` lists every status."""
        by_status = dict.fromkeys(statuses, 0)
        positions = excluded_self = excluded_copy = tried = distinct = contexts = trimmed = kept = 0
        deltas, distances = [], []
        columns = ["status", "positions", "candidates", "contexts", "num_excluded_self",
                   "num_excluded_near_duplicate", "num_contexts_trimmed", "dependency_distances",
                   "num_unit_tokens"]  # fmt: skip
        for batch in dependencies.select_columns(columns).iter(batch_size=1_000):
            for status in batch["status"]:
                by_status[status] += 1
            positions += sum(math.isfinite(p["entropy"]) for row in batch["positions"] for p in row)
            excluded_self += sum(batch["num_excluded_self"])
            excluded_copy += sum(batch["num_excluded_near_duplicate"])
            tried += sum(map(len, batch["candidates"]))
            distinct += sum(len({c["corpus_index"] for c in row}) for row in batch["candidates"])
            contexts += sum(map(len, batch["contexts"]))
            trimmed += sum(batch["num_contexts_trimmed"])
            kept += sum(c["kept"] for row in batch["candidates"] for c in row)
            deltas += [c["delta_i"] for row in batch["candidates"] for c in row
                       if c["kept"] and math.isfinite(c["delta_i"])]  # fmt: skip
            distances += [d for row, unit in zip(batch["dependency_distances"], batch["num_unit_tokens"],
                          strict=True) if unit for d in row]  # fmt: skip
        packing = packing_stats(packed) if packed is not None else None
        return cls(
            method=method,
            roots_read=root_counts.rows,
            roots_empty=root_counts.empty,
            roots=len(dependencies),
            roots_by_status=by_status,
            corpus_documents=sum(c.kept for c in corpus_counts),
            corpus_empty=sum(c.empty for c in corpus_counts),
            high_entropy_positions=positions,
            candidates_excluded_self=excluded_self,
            candidates_excluded_near_duplicate=excluded_copy,
            candidates_tried=tried,
            distinct_candidates_tried=distinct,
            verified_dependencies=kept,
            verified_contexts=contexts,
            mean_delta_i=round(float(np.mean(deltas)), 4) if deltas else None,
            contexts_trimmed_for_length=trimmed,
            units=packing.units if packing else 0,
            units_left_over=units_left_over,
            sequences=packing.rows if packing else 0,
            tokens=packing.tokens if packing else 0,
            padding_tokens=packing.padding_tokens if packing else 0,
            mean_dependency_distance=round(float(np.mean(distances)), 1) if distances else None,
        )


def print_summary(counts: BuildCounts, output_dir: str, label: str | None = None) -> None:
    """The build's counts on stderr, under `label` (`method_label`; default: the method's name)."""
    statuses = ", ".join(f"{status} {n}" for status, n in counts.roots_by_status.items())
    rows = [
        ("roots", f"{counts.roots} ({statuses}); {counts.roots_empty} empty dropped"),
        ("corpus documents", counts.corpus_documents),
        ("high-entropy positions", counts.high_entropy_positions),
        (
            "candidates tried",
            f"{counts.candidates_tried} ({counts.distinct_candidates_tried} distinct per root); excluded: "
            f"{counts.candidates_excluded_self} self, {counts.candidates_excluded_near_duplicate} near-duplicate",
        ),
        (
            "verified dependencies",
            f"{counts.verified_dependencies} in {counts.verified_contexts} contexts, mean ΔI {counts.mean_delta_i}",
        )
        if counts.method == "entropylong"
        else (
            "placed, not verified",
            f"{counts.verified_dependencies} (position, document) pairs, {counts.verified_contexts} documents",
        ),
        ("mean dependency distance", f"{counts.mean_dependency_distance or '—'} tokens"),
        (
            "units",
            f"{counts.units} in sequences, {counts.units_left_over} left over in under-filled rows; "
            f"{counts.contexts_trimmed_for_length} contexts trimmed for length",
        ),
        ("sequences", counts.sequences),
        ("tokens", f"{counts.tokens} ({counts.padding_tokens} padding)"),
        (
            "seconds",
            ", ".join(f"{stage} {s}" for stage, s in counts.seconds.items())
            + f"; total {sum(counts.seconds.values()):.1f}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    name = "EntropyLong" if counts.method == "entropylong" else f"{label or counts.method} baseline"
    print(f"\n{name} build written to {output_dir}", file=sys.stderr)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}", file=sys.stderr)


# (key, label) of the headline table; values come from stats.json (see `headline_rows`).
HEADLINE = (
    ("method", "method"),
    ("roots", "roots"),
    ("roots_ok", "roots with a unit (status ok)"),
    ("high_entropy_positions", "high-entropy positions"),
    ("candidates_tried", "candidates tried"),
    ("verified_dependencies", "kept dependencies"),
    ("verified_contexts", "kept contexts"),
    ("mean_delta_i", "mean ΔI of kept"),
    ("units", "units in sequences"),
    ("units_left_over", "units left over"),
    ("sequences", "sequences"),
    ("tokens", "tokens"),
    ("padding_tokens", "padding tokens"),
    ("mean_dependency_distance", "mean dependency distance (tokens)"),
)


KEYWORD_GROUPS = "keyword groups"
"""What a quest build without a query model is called wherever it is shown: its groups come from the documents' own
keywords, not from predicted queries, so it is not Quest as its authors compare it."""


def method_label(method: str, config: Mapping) -> str:
    """The name a build of `method` is shown under: the method's, except quest without `quest_query_model`."""
    return KEYWORD_GROUPS if method == "quest" and not config.get("quest_query_model") else method


def build_method(stats: Mapping, config: Mapping) -> str:
    """The build's method as it is shown (`method_label`; builds written before methods existed: `entropylong`)."""
    return method_label(stats.get("method") or config.get("method") or "entropylong", config)


def headline_rows(stats: Mapping, config: Mapping) -> list[tuple[str, str, str]]:
    """(key, label, shown value) of the headline table, from a build's `stats.json` and `build_config.yaml`."""
    values = dict(
        stats, method=build_method(stats, config), roots_ok=stats.get("roots_by_status", {}).get("ok")
    )
    return [(key, label, format_value(values.get(key))) for key, label in HEADLINE]


def format_value(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.1f}"
