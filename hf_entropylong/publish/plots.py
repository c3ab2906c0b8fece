"""The plots of a published build: distributions read from its tables, drawn with matplotlib.

`read_distributions` scans a build's `dependencies` parquet files in batches, reading only the columns (and nested
fields) it plots: per-token entropy (the sum of the roots' `entropy_histogram`), ΔI of kept and rejected
candidates (candidates without a ΔI, as baselines write them, are counted apart), high-entropy positions per root,
contexts per unit, unit length in tokens, and the dependency distance (tokens between the end of a context and the
position it serves, inside the unit). `plot_distributions` draws one PNG per distribution, builds overlaid;
`write_build_plots` draws a build's own into `<dataset>/plots/` at publish time, for the dataset card, and the
report (`report.py`) draws several builds side by side.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from ..stages.entropy import ENTROPY_HISTOGRAM_EDGES
from .counts import build_method
from .schema import published_names

PLOTS_DIR = "plots"

PLOT_TITLES = {
    "entropy": "Per-token entropy",
    "delta_i": "ΔI of kept and rejected candidates",
    "positions_per_root": "High-entropy positions per root",
    "contexts_per_unit": "Contexts per unit",
    "unit_tokens": "Attention span length: a unit, or a baseline's whole row (tokens)",
    "dependency_distance": "Dependency distance (tokens)",
}


def table_files(folder: Path, table: str) -> list[Path]:
    """The parquet files of config `table` that the folder's card names (all of `<table>/*.parquet` without a card):
    files a killed publish left beside them are not part of the dataset."""
    patterns = [f"{table}/*.parquet"]
    card = folder / "README.md"
    if card.is_file():
        header = card.read_text(encoding="utf-8").split("---")
        configs = (yaml.safe_load(header[1]) or {}).get("configs", []) if len(header) > 2 else []
        named = [
            files["path"]
            for entry in configs
            if entry.get("config_name") == table
            for files in entry.get("data_files", [])
        ]
        patterns = named or patterns
    return sorted({path for pattern in patterns for path in folder.glob(pattern)})


@dataclass
class Distributions:
    """The values each plot shows for one build; None where the build did not record them."""

    entropy: np.ndarray | None  # counts per bin of `entropy_edges`
    entropy_edges: np.ndarray | None
    delta_kept: np.ndarray | None
    delta_rejected: np.ndarray | None
    candidates_without_delta: int
    positions_per_root: np.ndarray | None
    contexts_per_unit: np.ndarray | None
    unit_tokens: np.ndarray | None
    dependency_distance: np.ndarray | None


def _entropy_edges(num_bins: int) -> np.ndarray:
    edges = ENTROPY_HISTOGRAM_EDGES
    return np.asarray(edges) if len(edges) == num_bins + 1 else np.arange(num_bins + 1, dtype=float)


def _list_lengths(column: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)


def _flat(column: pa.Array) -> np.ndarray:
    return pc.list_flatten(column).to_numpy(zero_copy_only=False)


def _joined(parts: list[np.ndarray] | None) -> np.ndarray | None:
    return None if parts is None else (np.concatenate(parts) if parts else np.zeros(0))


def read_distributions(folder: Path) -> Distributions:
    """Scan a published build's tables in batches (whatever columns they have) for the plotted distributions."""
    files = table_files(folder, "dependencies")
    kept_name = published_names(folder).kept
    schema = pq.ParquetFile(files[0]).schema if files else None
    paths = [schema.column(i).path for i in range(len(schema))] if schema else []
    names = {path.split(".")[0] for path in paths}

    def leaves(column: str, *fields: str) -> list[str]:  # nested fields read alone (not the query strings)
        found = [p for p in paths if p.split(".")[0] == column and p.rsplit(".", 1)[-1] in fields]
        return found if len(found) == len(fields) else []

    position_leaves = leaves("positions", "entropy")
    candidate_leaves = leaves("candidates", "delta_i", kept_name)
    simple = ["status", "unit_context_ids", "num_unit_tokens", "dependency_distances", "entropy_histogram"]
    wanted = position_leaves + candidate_leaves + [name for name in simple if name in names]
    names = {name for name in names if name not in ("positions", "candidates")}
    names |= {"positions"} if position_leaves else set()
    names |= {"candidates"} if candidate_leaves else set()
    has = names.__contains__
    delta_kept, delta_rejected, positions, contexts, unit_tokens, distances = (
        ([] if has(column) else None)
        for column in ("candidates", "candidates", "positions", "unit_context_ids", "num_unit_tokens",
                       "dependency_distances")
    )  # fmt: skip
    entropy = None
    without_delta = 0
    for path in files if wanted else []:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000, columns=wanted):
            column = batch.column
            if has("positions"):
                # positions with an entropy: a baseline's keywords and meta-chunks have none (NaN)
                entropy_values = pc.list_flatten(column("positions")).field("entropy")
                finite = np.isfinite(pc.fill_null(entropy_values, math.nan).to_numpy(zero_copy_only=False))
                parents = pc.list_parent_indices(column("positions")).to_numpy(zero_copy_only=False)
                positions.append(np.bincount(parents[finite], minlength=batch.num_rows))
            if has("candidates"):
                flat = pc.list_flatten(column("candidates"))
                delta = pc.fill_null(flat.field("delta_i"), math.nan).to_numpy(zero_copy_only=False)
                kept = pc.fill_null(flat.field(kept_name), False).to_numpy(zero_copy_only=False)
                without_delta += int(np.isnan(delta).sum())
                delta_kept.append(delta[kept & ~np.isnan(delta)])
                delta_rejected.append(delta[~kept & ~np.isnan(delta)])
            if has("num_unit_tokens"):
                unit_length = pc.fill_null(column("num_unit_tokens"), 0).to_numpy(zero_copy_only=False)
                in_unit = unit_length > 0
                unit_tokens.append(unit_length[in_unit])
            else:
                in_unit = (column("status").to_numpy(zero_copy_only=False) == "ok") if has("status") else None
            if has("unit_context_ids") and in_unit is not None:
                contexts.append(_list_lengths(column("unit_context_ids"))[in_unit])
            if has("dependency_distances"):  # of the roots that have a unit, as stats.json's mean
                pairs = column("dependency_distances")
                distances.append(_flat(pairs.filter(pa.array(in_unit)) if in_unit is not None else pairs))
            if has("entropy_histogram"):
                histograms = column("entropy_histogram")
                lengths = _list_lengths(histograms)
                num_bins = int(lengths.max(initial=0))
                if num_bins:  # roots that were not scored have an empty histogram
                    rows = _flat(histograms.filter(pa.array(lengths == num_bins))).reshape(-1, num_bins)
                    entropy = rows.sum(axis=0) if entropy is None else entropy + rows.sum(axis=0)
    if unit_tokens is None:
        unit_tokens = _packed_unit_tokens(folder)
    return Distributions(
        entropy=entropy,
        entropy_edges=_entropy_edges(len(entropy)) if entropy is not None else None,
        delta_kept=_joined(delta_kept),
        delta_rejected=_joined(delta_rejected),
        candidates_without_delta=without_delta,
        positions_per_root=_joined(positions),
        contexts_per_unit=_joined(contexts),
        unit_tokens=_joined(unit_tokens),
        dependency_distance=_joined(distances),
    )


def _packed_unit_tokens(folder: Path) -> list[np.ndarray] | None:
    """Unit lengths read from the packed rows' spans (builds without `num_unit_tokens`): units in sequences only."""
    files = table_files(folder, "default")
    if not files or "seq_lengths" not in pq.read_schema(files[0]).names:
        return None
    columns = [n for n in ("seq_lengths", "num_padding_tokens") if n in pq.read_schema(files[0]).names]
    lengths = []
    for path in files:
        for row in pq.ParquetFile(path).iter_batches(batch_size=256, columns=columns):
            for spans, padding in zip(row.column("seq_lengths").to_pylist(),
                                      row.column("num_padding_tokens").to_pylist() if len(columns) > 1
                                      else [0] * row.num_rows, strict=True):  # fmt: skip
                lengths.append(np.asarray(spans[:-1] if padding else spans))
    return lengths


def _step(ax, values, bins, color, label, share: bool, **style) -> None:
    """A step histogram of `values` (clipped into `bins`): shares when `share`, else counts over a filled area."""
    clipped = np.clip(values, bins[0], bins[-1])
    if not share:
        ax.hist(clipped, bins=bins, histtype="stepfilled", color=color, alpha=0.2)
    weights = np.full(len(values), 1 / len(values)) if share else None
    ax.hist(clipped, bins=bins, weights=weights, histtype="step", color=color, label=label, **style)


def plot_distributions(
    builds: Sequence[tuple[str, Distributions, float | None]], out_dir: Path
) -> list[tuple[str, str]]:
    """Draw each distribution that at least one build recorded (other than all zeros, as the positions of the
    baselines that have none) into `out_dir/<name>.png`, builds overlaid (as shares of each build's total when
    there are several, else as counts).

    Args:
        builds: (label, distributions, ε of the build or None) per build.
        out_dir: the folder of the PNG files (created).

    Returns:
        (file name, title) of each plot written.
    """
    from matplotlib.figure import Figure

    out_dir.mkdir(parents=True, exist_ok=True)
    share, written = len(builds) > 1, []
    colors = [f"C{i % 10}" for i in range(len(builds))]

    def recorded(field: str) -> list[np.ndarray]:
        return [v for _, d, _ in builds if (v := getattr(d, field)) is not None and len(v)]

    def top(field: str) -> int:
        return max((int(v.max()) for v in recorded(field)), default=1)

    def draw(name: str, xlabel: str, fields: tuple[str, ...], bins=None, log_x: bool = False) -> None:
        if not any(v.any() for field in fields for v in recorded(field)):  # nothing, or only zeros
            return
        entries = len(builds) * (2 if name == "delta_i" else 1)  # the legend goes below the plot when long
        height = 3.4 if len(builds) <= 2 else 3.4 + 0.17 * math.ceil(entries / 2)
        fig = Figure(figsize=(6.4, height), dpi=110, layout="constrained")
        ax = fig.add_subplot(xlabel=xlabel, ylabel="share" if share else "count")
        notes = []  # builds that have nothing to draw here, said in the legend
        for index, ((label, d, _), color) in enumerate(zip(builds, colors, strict=True)):
            width = max(0.8, 2.4 - 0.4 * index)  # later builds thinner, over earlier ones: equal curves show
            if (
                name == "delta_i"
            ):  # kept and rejected as shares of their own group: shapes compare at any count
                groups = (
                    ("kept", d.delta_kept, "-", width),
                    ("rejected", d.delta_rejected, "--", width * 0.7),
                )
                for group, values, style, line in groups:
                    if values is not None and len(values):
                        label_n = f"{label} {group} (n={len(values):,})"
                        _step(ax, values, bins, color, label_n, True, linestyle=style, linewidth=line)
                if d.candidates_without_delta:
                    notes.append(f"{label}: {d.candidates_without_delta:,} candidates without ΔI")
                continue
            values = getattr(d, fields[0])
            if values is None or not len(values):
                notes.append(f"{label}: {'none' if values is not None else 'not recorded'}")
            elif name == "entropy":
                total = int(values.sum())
                heights = values / total if share and total else values
                ax.stairs(
                    heights, d.entropy_edges, color=color, linewidth=width, label=f"{label} (n={total:,})"
                )
            else:
                _step(ax, values, bins, color, f"{label} (n={len(values):,})", share, linewidth=width)
        for note in notes:
            ax.plot([], [], linestyle="none", label=note)
        if name == "delta_i":
            ax.set_ylabel("share of kept / of rejected")
            for epsilon in sorted({e for _, _, e in builds if e is not None}):
                ax.axvline(epsilon, color="0.3", linewidth=0.8, linestyle=":")
                ax.text(epsilon, 0.62, f" ε = {epsilon:g}", transform=ax.get_xaxis_transform(), fontsize=8)
        if log_x:
            ax.set_xscale("symlog", linthresh=10)
        ax.set_title(PLOT_TITLES[name], fontsize=11)
        ax.grid(alpha=0.3)
        if len(builds) > 2:
            fig.legend(fontsize=7, loc="outside lower center", ncols=2, frameon=False)
        else:
            ax.legend(fontsize=7, loc="upper left" if name == "delta_i" else "best")
        fig.savefig(out_dir / f"{name}.png")
        written.append((f"{name}.png", PLOT_TITLES[name]))

    def integer_bins(field: str) -> np.ndarray:
        return np.arange(-0.5, top(field) + 1.5) if top(field) <= 60 else np.linspace(0, top(field) + 1, 50)

    distance_bins = np.unique(
        np.concatenate([[0], np.geomspace(1, top("dependency_distance") + 1, 40).round()])
    )
    draw("entropy", "entropy (nats)", ("entropy",))
    draw("delta_i", "ΔI (clipped to [-1, 1])", ("delta_kept", "delta_rejected"), np.linspace(-1.0, 1.0, 41))
    draw("positions_per_root", "positions", ("positions_per_root",), integer_bins("positions_per_root"))
    draw("contexts_per_unit", "contexts", ("contexts_per_unit",), integer_bins("contexts_per_unit"))
    draw("unit_tokens", "tokens", ("unit_tokens",), np.linspace(0, top("unit_tokens"), 41))
    draw("dependency_distance", "tokens (log scale above 10)", ("dependency_distance",), distance_bins, True)
    return written


def read_yaml(path: Path) -> dict:
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}


def write_build_plots(folder: Path) -> list[tuple[str, str]]:
    """Draw the plots of the build published in `folder` into `folder/plots/` (always created); return their
    (path relative to `folder`, title), for the dataset card. Plots need only the columns they show."""
    stats = json.loads((folder / "stats.json").read_text()) if (folder / "stats.json").is_file() else {}
    config = read_yaml(folder / "build_config.yaml")
    build = (build_method(stats, config), read_distributions(folder), config.get("epsilon"))
    return [(f"{PLOTS_DIR}/{name}", title) for name, title in plot_distributions([build], folder / PLOTS_DIR)]
