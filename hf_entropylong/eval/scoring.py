"""Scoring (RULER's string matching) and the results files every `hf-entropylong eval` command writes.

RULER scores a prediction against the list of expected strings of its sample, case-insensitively, after
turning control characters into newlines and stripping:

- `all` (string_match_all): the share of expected strings that occur in the prediction. A multi-value
  NIAH sample with 4 values of which 3 are found scores 0.75.
- `part` (string_match_part): 1 when any expected string occurs (QA answers are alternatives).

A task's score is the mean over its samples, × 100. With fewer samples than RULER's 500 a score is an
estimate, so each cell carries a 95% confidence half-width (`ci95`): the Agresti-Coull interval of a
proportion (n + 4 trials, 2 added successes), which also bounds a mean of partial scores in [0, 1] (its
variance is at most p(1 - p)). The average of k cells gets 1.96 · sqrt(Σ p̃ᵢ(1 - p̃ᵢ)/(nᵢ + 4)) / k,
the cells being independent samples.

`<output_dir>/results.json` holds `{"model", "benchmark", "config", "scores": [{"task", "length",
"score"}], "summary": {"average", ...}}`; `results.md` holds the same numbers as a Markdown table; the
needle-in-a-haystack grid is also drawn as a depth × length heatmap (`plot_heatmap`).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import asdict
from pathlib import Path

_CONTROL = re.compile(r"[\x00-\x1f]")


def postprocess(prediction: str) -> str:
    """A prediction with control characters turned into newlines, stripped (RULER's post-processing)."""
    return _CONTROL.sub("\n", prediction.strip()).strip()


def string_match_all(prediction: str, references: list[str]) -> float:
    """Share of `references` contained in `prediction` (case-insensitive), in [0, 1]."""
    if not references:
        raise ValueError("A sample needs at least one expected string.")
    prediction = postprocess(prediction).lower()
    return sum(reference.lower() in prediction for reference in references) / len(references)


def string_match_part(prediction: str, references: list[str]) -> float:
    """1.0 when any of `references` is contained in `prediction` (case-insensitive), else 0.0."""
    if not references:
        raise ValueError("A sample needs at least one expected string.")
    prediction = postprocess(prediction).lower()
    return float(any(reference.lower() in prediction for reference in references))


METRICS = {"all": string_match_all, "part": string_match_part}


def score_sample(prediction: str, references: list[str], metric: str) -> float:
    """Score of one prediction under `metric` (`all` or `part`), in [0, 1]."""
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; known: {', '.join(METRICS)}.")
    return METRICS[metric](prediction, references)


Z95 = 1.96


def _adjusted(mean: float, count: int) -> tuple[float, int]:
    """Agresti-Coull: the proportion and trials with z²/2 ≈ 2 successes and z² ≈ 4 trials added."""
    return (mean * count + 2) / (count + 4), count + 4


def ci95(mean: float, count: int) -> float:
    """95% confidence half-width, × 100, of a mean score in [0, 1] over `count` samples."""
    p, n = _adjusted(mean, count)
    return round(100 * Z95 * math.sqrt(p * (1 - p) / n), 2)


def table_scores(rows: list[dict]) -> list[dict]:
    """Mean score × 100 (and its `ci95`) per (task, length) over rows with `task`, `max_length`, `score`."""
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for row in rows:
        groups[(row["task"], row["max_length"])].append(row["score"])
    return [
        {
            "task": task,
            "length": length,
            "score": round(100 * sum(values) / len(values), 2),
            "samples": len(values),
            "ci95": ci95(sum(values) / len(values), len(values)),
        }
        for (task, length), values in groups.items()
    ]


def summarize(scores: list[dict]) -> dict:
    """Overall average (with its 95% half-width when the cells give `samples`) and the average per length."""
    by_length: dict = defaultdict(list)
    for entry in scores:
        by_length[entry["length"]].append(entry["score"])
    average = sum(entry["score"] for entry in scores) / len(scores) if scores else 0.0
    summary = {
        "average": round(average, 2),
        "per_length": {
            str(length): round(sum(v) / len(v), 2) for length, v in sorted(by_length.items(), key=str)
        },
    }
    if scores and all("samples" in entry for entry in scores):
        variance = 0.0
        for entry in scores:
            p, n = _adjusted(entry["score"] / 100, entry["samples"])
            variance += p * (1 - p) / n
        summary["average_ci95"] = round(100 * Z95 * math.sqrt(variance) / len(scores), 2)
    return summary


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.2f}" if values else ""


def markdown_table(
    scores: list[dict],
    row_key: str = "task",
    column_key: str = "length",
    windows: Mapping[str, Collection] | None = None,
) -> str:
    """Scores as a Markdown table: one row per `row_key`, one column per `column_key`, then a column per window
    (`windows`: its name → the `column_key` values it averages, e.g. RULER's "8K-128K"), then the average of all."""
    rows = list(dict.fromkeys(entry[row_key] for entry in scores))
    columns = sorted(dict.fromkeys(entry[column_key] for entry in scores), key=lambda c: (c is None, c))
    cell = {(entry[row_key], entry[column_key]): entry["score"] for entry in scores}
    windows = windows or {}
    lines = [
        "| " + " | ".join([row_key, *map(str, columns), *windows, "average"]) + " |",
        "|" + "---|" * (len(columns) + len(windows) + 2),
    ]
    for row in rows:
        values = [cell.get((row, column)) for column in columns]
        per_window = [
            _mean([v for c, v in zip(columns, values, strict=True) if c in w and v is not None])
            for w in windows.values()
        ]
        mean = _mean([v for v in values if v is not None])
        lines.append(
            "| "
            + " | ".join([str(row), *("" if v is None else f"{v:.2f}" for v in values), *per_window, mean])
            + " |"
        )
    column_means = [_mean([cell[(row, c)] for row in rows if (row, c) in cell]) for c in columns]
    window_means = [_mean([v for (_, c), v in cell.items() if c in w]) for w in windows.values()]
    overall = sum(cell.values()) / len(cell) if cell else 0.0
    lines.append(
        "| " + " | ".join(["**average**", *column_means, *window_means, f"**{overall:.2f}**"]) + " |"
    )
    return "\n".join(lines)


def write_results(
    args, benchmark: str, window: int, result: dict, *, markdown: str, predictions: list[dict] | None = None
) -> Path:
    """Write `results.json`, `results.md` and (when given) `predictions.jsonl` to `args.output_dir`.

    Args:
        args: the command's argument dataclass (`output_dir`, `model`; all of it goes to `config`).
        benchmark: `ruler`, `niah` or `longbench-v2`.
        window: the model's context window, recorded in `config`.
        result: `{"scores": [{task, length, score, ...}], "summary": {average, ...}}`.
        markdown: the scores as a Markdown table, for `results.md`.
        predictions: one dict per sample, for `predictions.jsonl`.

    Returns:
        the path of `results.json`.
    """
    output_dir, model = Path(args.output_dir), args.model
    output_dir.mkdir(parents=True, exist_ok=True)
    results = {
        "model": model,
        "benchmark": benchmark,
        "config": asdict(args) | {"window": window},
        "scores": [
            {key: s[key] for key in ("task", "length", "score", "samples", "ci95") if key in s}
            for s in result["scores"]
        ],
        "summary": result["summary"],
    }
    path = output_dir / "results.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    (output_dir / "results.md").write_text(f"# {benchmark}: {model}\n\n{markdown}\n", encoding="utf-8")
    if predictions is not None:
        with (output_dir / "predictions.jsonl").open("w", encoding="utf-8") as handle:
            for row in predictions:
                handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return path


def plot_heatmap(cells: list[dict], path: str | Path, title: str) -> Path:
    """Draw {depth, length, score} cells as a depth × length heatmap PNG (scores 0-100)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LinearSegmentedColormap

    depths = sorted({cell["depth"] for cell in cells})
    lengths = sorted({cell["length"] for cell in cells})
    grid = np.full((len(depths), len(lengths)), np.nan)
    for cell in cells:
        grid[depths.index(cell["depth"]), lengths.index(cell["length"])] = cell["score"]
    colors = LinearSegmentedColormap.from_list("niah", ["#F0496E", "#EBB839", "#0CD79F"])
    figure, axes = plt.subplots(
        figsize=(max(6.0, 2.5 + 0.9 * len(lengths)), max(3.0, 1.2 + 0.4 * len(depths)))
    )
    image = axes.imshow(grid, cmap=colors, vmin=0, vmax=100, aspect="auto")
    axes.set_xticks(
        range(len(lengths)),
        [f"{length // 1024}K" if length % 1024 == 0 else str(length) for length in lengths],
    )
    axes.set_yticks(range(len(depths)), [f"{depth}%" for depth in depths])
    for i in range(len(depths)):
        for j in range(len(lengths)):
            if not np.isnan(grid[i, j]):
                axes.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=8)
    axes.set_xlabel("Context length (tokens)")
    axes.set_ylabel("Needle depth")
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, label="Score")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
