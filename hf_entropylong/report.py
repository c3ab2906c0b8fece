"""`hf-entropylong report`: a static page that shows one or more published builds side by side.

    hf-entropylong report outputs/demo [outputs/noverify ...] [--report_dir DIR] [--viewer_roots 500]

It reads only what a build publishes (`stats.json`, `build_config.yaml`, `dependencies/*.parquet`,
`default/*.parquet`; see `publish.py`): no model, no network. Each build is labelled by its method and folder
name. It writes `index.html` (inline CSS and JS, nothing fetched) and the plots it shows, `plots/*.png`, into
`--report_dir`, by default `<first OUTPUT_DIR>/report/` (beside the data it describes; `push_folder` never uploads
it). The page has:

- the headline table: each build's counts from its `stats.json` (method, roots, positions, candidates, kept
  dependencies, contexts, mean ΔI, units, sequences, tokens, padding, mean dependency distance, ...);
- the distributions, builds overlaid in one PNG each (`plots.plot_distributions`): per-token entropy (the sum of the
  roots' `entropy_histogram`), ΔI of kept and rejected candidates (candidates without a ΔI, as baselines write
  them, are counted apart), high-entropy positions per root, contexts per unit, the attention span length in
  tokens (an EntropyLong unit; a full-row baseline's whole row), and the dependency distance (tokens between the
  end of a context and the position it serves; NExtLong: between consecutive root chunks), per method side by side;
- the dependency viewer: per build, at most `--viewer_roots` roots (a uniform sample, seed 0, when there are
  more; the page says how many of how many), paginated and filtered by status, kept or not, and text. Each
  root's text shows its high-entropy positions highlighted (green when a candidate was kept there); clicking one
  shows its entropy, query window and every candidate (corpus id, similarity, entropy with the context, ΔI,
  kept). To keep the page light with long roots, texts over `MAX_TEXT_CHARS` are shown around their positions
  only, a root shows at most `MAX_VIEWER_POSITIONS` positions (those where a candidate was kept first, then the
  highest entropies), and a build embeds fewer roots rather than more than `MAX_VIEWER_BYTES`. The URL hash
  `#build=I&root=ID&position=TOKEN_INDEX` opens a position, and clicking one sets it.

The report folder is written only when it is new, empty, or holds `.hf_entropylong_report.json` (the marker of a
previous report, listing the files it wrote): a report never overwrites a file it did not write.

At publish time `plots.write_build_plots` draws the same plots of the one build into `<dataset>/plots/`, which the
dataset card embeds with relative links.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .paths import PACKAGE_DIR
from .publish.counts import HEADLINE, build_method, headline_rows
from .publish.plots import (
    PLOT_TITLES,
    PLOTS_DIR,
    plot_distributions,
    read_distributions,
    read_yaml,
    table_files,
)
from .publish.schema import NAMES, SCHEMA_VERSION, PublishedNames, published_names

TEMPLATE = PACKAGE_DIR / "templates" / "report.html"
REPORT_MARKER = ".hf_entropylong_report.json"
DEFAULT_VIEWER_ROOTS = 500
# Longer root texts are embedded as their first HEAD_CHARS and SPAN_CHARS around each position.
MAX_TEXT_CHARS, HEAD_CHARS, SPAN_CHARS = 12_000, 2_000, 300
# Per root: a 128K-token root can have thousands of positions (those with a kept candidate come first).
MAX_VIEWER_POSITIONS = 100
MAX_VIEWER_BYTES = 20 * 2**20  # per build: the page embeds fewer roots rather than grow past this
REQUIRED = (
    "root_id",
    "root_text",
    "status",
    "positions",
    "candidates",
    "unit_context_ids",
)  # and the contexts
OPTIONAL = ("num_tokens", "entropy_mean", "entropy_std", "entropy_histogram", "num_unit_tokens",
            "unit_context_lengths", "dependency_distances")  # fmt: skip


def check_build(folder: Path) -> None:
    """Raise a one-line error naming `folder` unless it holds a published build with the columns the report reads."""
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(
            f"{folder} {what}: give the output_dir of a published `hf-entropylong build`."
        )
    missing = [name for name in ("stats.json", "build_config.yaml") if not (folder / name).is_file()]
    missing += [
        f"{table}/*.parquet" for table in ("default", "dependencies") if not table_files(folder, table)
    ]
    if missing:
        raise ValueError(
            f"{folder} is not a published hf_entropylong build (no {', '.join(missing)}): give the output_dir of a "
            "finished `hf-entropylong build`."
        )
    names = pq.read_schema(table_files(folder, "dependencies")[0]).names
    lacking = [name for name in (*REQUIRED, published_names(folder).contexts) if name not in names]
    if lacking:
        raise ValueError(
            f"{folder}: its dependencies table lacks the columns {', '.join(lacking)}; rebuild it with this "
            f"version: hf-entropylong build --config {folder / 'build_config.yaml'}"
        )


def _round(value, digits: int = 4):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(value, digits)


def text_pieces(text: str, positions: Sequence[Mapping]) -> list[list]:
    """`text` as [char_start, piece] pieces: whole when short, else its head and the text around each position."""
    if len(text) <= MAX_TEXT_CHARS:
        return [[0, text]]
    spans = sorted([(0, HEAD_CHARS)] + [(max(0, p["char_start"] - SPAN_CHARS), p["char_end"] + SPAN_CHARS)
                                        for p in positions])  # fmt: skip
    merged = [list(spans[0])]
    for start, end in spans[1:]:
        if start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [[start, text[start:end]] for start, end in merged]


def _shown_positions(
    positions: list[dict], candidates: list[dict], limit: int, kept: str
) -> tuple[list[dict], list[dict]]:
    """At most `limit` positions (those where a candidate was kept, then the highest entropies; in text order) and
    their candidates, plus the candidates tied to no position (a baseline's)."""
    if len(positions) <= limit:
        return positions, candidates
    kept_at = {c["token_index"] for c in candidates if c[kept]}

    def rank(p: dict) -> tuple[bool, float]:
        return p["token_index"] not in kept_at, -p["entropy"] if math.isfinite(p["entropy"]) else math.inf

    shown = {p["token_index"] for p in sorted(positions, key=rank)[:limit]}
    every = {p["token_index"] for p in positions}
    return (
        [p for p in positions if p["token_index"] in shown],
        [c for c in candidates if c["token_index"] in shown or c["token_index"] not in every],
    )


def viewer_root(
    row: Mapping, max_positions: int = MAX_VIEWER_POSITIONS, names: PublishedNames = NAMES[SCHEMA_VERSION]
) -> dict:
    """One root as the viewer's JavaScript reads it (short keys; NaN as null; at most `max_positions` positions).

    `names`: the column names of the build's schema version (`publish.schema`).
    """
    positions, candidates = _shown_positions(
        row["positions"] or [], row["candidates"] or [], max_positions, names.kept
    )
    return {
        "id": row["root_id"], "status": row["status"], "tokens": row.get("num_tokens"),
        "mean": _round(row.get("entropy_mean")), "std": _round(row.get("entropy_std")),
        "chars": len(row["root_text"]), "text": text_pieces(row["root_text"], positions),
        "positions_total": len(row["positions"] or []), "candidates_total": len(row["candidates"] or []),
        "positions": [{"t": p["token_index"], "s": p["char_start"], "e": p["char_end"], "tok": p["token"],
                       "h": _round(p["entropy"]), "q": p["query"]} for p in positions],
        "candidates": [{"t": c["token_index"], "id": c["corpus_id"], "sim": _round(c["similarity"]),
                        "h": _round(c.get("entropy_with_context")), "di": _round(c["delta_i"]),
                        "kept": bool(c[names.kept])} for c in candidates],
        "contexts": [{"id": c["corpus_id"], "di": _round(c["delta_i"]), "t": c["token_indices"]}
                     for c in row[names.contexts] or []],
        "unit": row["unit_context_ids"] or [], "unit_lengths": row.get("unit_context_lengths"),
        "unit_tokens": row.get("num_unit_tokens"), "distances": row.get("dependency_distances"),
    }  # fmt: skip


def sample_indices(total: int, limit: int, seed: int = 0) -> np.ndarray:
    """The rows the viewer embeds: all when `total <= limit`, else a uniform sample (seeded), in table order."""
    if total <= limit:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=limit, replace=False))


def viewer_roots(folder: Path, limit: int, seed: int = 0) -> tuple[int, list[dict]]:
    """The number of roots and the sampled roots of `folder`, read row group by row group (only those needed).

    At most `limit` roots (`sample_indices`), and fewer when their data would exceed `MAX_VIEWER_BYTES`.
    """
    files = table_files(folder, "dependencies")
    published = published_names(folder)
    names = pq.read_schema(files[0]).names
    columns = [
        name
        for name in (*REQUIRED, published.contexts, *OPTIONAL)
        if name in names and name != "entropy_histogram"
    ]
    total = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
    wanted, offset, roots = sample_indices(total, limit, seed), 0, []
    for path in files:
        parquet = pq.ParquetFile(path)
        for group in range(parquet.num_row_groups):
            size = parquet.metadata.row_group(group).num_rows
            chosen = wanted[(wanted >= offset) & (wanted < offset + size)] - offset
            if len(chosen):
                rows = parquet.read_row_group(group, columns=columns).take(pa.array(chosen)).to_pylist()
                roots += [viewer_root(row, names=published) for row in rows]
            offset += size
    sizes = [len(json.dumps(root, ensure_ascii=False)) for root in roots]
    if sum(sizes) > MAX_VIEWER_BYTES:  # fewer roots (a seeded sample of the sample): the page stays light
        keep, used = set(), 0
        for index in np.random.default_rng(seed + 1).permutation(len(roots)):
            if used + sizes[index] <= MAX_VIEWER_BYTES:
                keep.add(index)
                used += sizes[index]
        roots = [root for index, root in enumerate(roots) if index in keep]
    return total, roots


def _labels(folders: Sequence[Path], methods: Sequence[str]) -> list[str]:
    labels = [f"{method} · {folder.name}" for folder, method in zip(folders, methods, strict=True)]
    return [
        f"{label} ({folder.parent.name})" if labels.count(label) > 1 else label
        for label, folder in zip(labels, folders, strict=True)
    ]


def claim_report_dir(report_dir: Path) -> list[str]:
    """Refuse a report folder that holds files this command did not write; return the files it wrote before."""
    marker = report_dir / REPORT_MARKER
    if marker.is_file():
        return json.loads(marker.read_text()).get("written", [])
    if report_dir.exists() and (not report_dir.is_dir() or any(report_dir.iterdir())):
        raise FileExistsError(
            f"report_dir {report_dir} exists and holds no report of hf-entropylong: choose a new or empty folder "
            "with --report_dir."
        )
    report_dir.mkdir(parents=True, exist_ok=True)
    return []


def write_report(folders: Sequence[Path], report_dir: Path, limit: int = DEFAULT_VIEWER_ROOTS) -> Path:
    """Write the report of the builds in `folders` into `report_dir`; return the path of its `index.html`.

    Args:
        folders: published build folders, in the order of the page's columns.
        report_dir: the report's folder: new, empty, or one a report was written into before.
        limit: the most roots per build the viewer embeds (`viewer_roots`).
    """
    import jinja2

    folders = [Path(folder) for folder in folders]
    for folder in folders:
        check_build(folder)
    if limit < 0:
        raise ValueError(f"--viewer_roots must be >= 0, got {limit}.")
    previous = claim_report_dir(report_dir)
    stats = [json.loads((folder / "stats.json").read_text()) for folder in folders]
    configs = [read_yaml(folder / "build_config.yaml") for folder in folders]
    methods = [build_method(s, c) for s, c in zip(stats, configs, strict=True)]
    labels = _labels(folders, methods)
    distributions = [read_distributions(folder) for folder in folders]
    plots = plot_distributions(
        [(label, d, c.get("epsilon")) for label, d, c in zip(labels, distributions, configs, strict=True)],
        report_dir / PLOTS_DIR,
    )
    builds = []
    for index, (folder, label, s, c) in enumerate(zip(folders, labels, stats, configs, strict=True)):
        total, roots = viewer_roots(folder, limit)
        data = {
            "label": label,
            "total": total,
            "statuses": list(s.get("roots_by_status", {})),
            "roots": roots,
        }
        builds.append({
            "index": index, "label": label, "folder": str(folder), "config": c,
            "headline": headline_rows(s, c), "total": total, "shown": len(roots), "limit": limit,
            "statuses": ", ".join(f"{name} {n:,}" for name, n in s.get("roots_by_status", {}).items()) or "—",
            "data_json": json.dumps(data, ensure_ascii=False, allow_nan=False).replace("<", "\\u003c"),
        })  # fmt: skip
    template = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
        TEMPLATE.read_text(encoding="utf-8")
    )
    html = template.render(
        builds=builds, headline=HEADLINE, plots=[(f"{PLOTS_DIR}/{name}", title) for name, title in plots],
        missing_plots=[title for name, title in PLOT_TITLES.items() if f"{name}.png" not in dict(plots)],
        max_text_chars=MAX_TEXT_CHARS, max_positions=MAX_VIEWER_POSITIONS, max_viewer_mb=MAX_VIEWER_BYTES >> 20,
        settings=SETTINGS_SHOWN,
    )  # fmt: skip
    index = report_dir / "index.html"
    index.write_text(html, encoding="utf-8")
    written = ["index.html", *(f"{PLOTS_DIR}/{name}" for name, _ in plots)]
    for stale in set(previous) - set(written):  # plots of an earlier report that this one does not draw
        (report_dir / stale).unlink(missing_ok=True)
    (report_dir / REPORT_MARKER).write_text(
        json.dumps({"written_by": "hf_entropylong", "written": written}) + "\n"
    )
    return index


SETTINGS_SHOWN = ("lm", "embedder", "alpha", "top_k", "epsilon", "order", "max_seq_length", "num_roots")


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="hf-entropylong report",
        description="Write a static HTML report (headline counts, distributions, dependency viewer) of one or "
        "more published builds, side by side.",
    )
    parser.add_argument("output_dirs", nargs="+", metavar="OUTPUT_DIR", help="Folders of published builds.")
    parser.add_argument(
        "--report_dir",
        default=None,
        help="Where index.html and plots/ go (default: <first OUTPUT_DIR>/report).",
    )
    parser.add_argument(
        "--viewer_roots",
        type=int,
        default=DEFAULT_VIEWER_ROOTS,
        help=f"Roots per build embedded in the viewer, sampled when there are more (default {DEFAULT_VIEWER_ROOTS}).",
    )
    args = parser.parse_args(argv)
    folders = [Path(folder) for folder in args.output_dirs]
    report_dir = Path(args.report_dir) if args.report_dir else folders[0] / "report"
    index = write_report(folders, report_dir, args.viewer_roots)
    print(f"Report written to {index}")
    return index


if __name__ == "__main__":
    from hf_entropylong import cli

    cli.run(main)
