"""Publishing a build: counts of every stage, both configs as parquet, the dataset card, the Hub push."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

import datasets
import numpy as np

from .cards import render_dataset_card
from .config import STATUSES, BuildConfig
from .pack import packing_stats


def summarize(root_counts, corpus_counts, dependencies: datasets.Dataset, packed) -> dict:
    """Counts of every stage (what was kept, what was dropped and why), from the per-root rows."""
    statuses = dict.fromkeys(STATUSES, 0)
    totals = dict.fromkeys(
        ["positions", "excluded_self", "excluded_copy", "tried", "distinct", "verified_contexts", "trimmed"],
        0,
    )
    deltas = []
    columns = ["status", "positions", "candidates", "verified_contexts", "num_excluded_self",
               "num_excluded_near_duplicate", "num_contexts_trimmed"]  # fmt: skip
    for batch in dependencies.select_columns(columns).iter(batch_size=1_000):
        for status in batch["status"]:
            statuses[status] += 1
        totals["positions"] += sum(map(len, batch["positions"]))
        totals["excluded_self"] += sum(batch["num_excluded_self"])
        totals["excluded_copy"] += sum(batch["num_excluded_near_duplicate"])
        totals["tried"] += sum(map(len, batch["candidates"]))
        totals["distinct"] += sum(len({c["corpus_index"] for c in row}) for row in batch["candidates"])
        totals["verified_contexts"] += sum(map(len, batch["verified_contexts"]))
        totals["trimmed"] += sum(batch["num_contexts_trimmed"])
        deltas += [c["delta_i"] for row in batch["candidates"] for c in row if c["verified"]]
    packing = packing_stats(packed) if packed is not None else None
    return {
        "roots_read": root_counts.rows,
        "roots_empty": root_counts.empty,
        "roots": len(dependencies),
        "roots_by_status": statuses,
        "corpus_documents": sum(c.kept for c in corpus_counts),
        "corpus_empty": sum(c.empty for c in corpus_counts),
        "high_entropy_positions": totals["positions"],
        "candidates_excluded_self": totals["excluded_self"],
        "candidates_excluded_near_duplicate": totals["excluded_copy"],
        "candidates_tried": totals["tried"],
        "distinct_candidates_tried": totals["distinct"],
        "verified_dependencies": len(deltas),
        "verified_contexts": totals["verified_contexts"],
        "mean_delta_i": round(float(np.mean(deltas)), 4) if deltas else None,
        "contexts_trimmed_for_length": totals["trimmed"],
        "units": packing.units if packing else 0,
        "sequences": packing.rows if packing else 0,
        "tokens": packing.tokens if packing else 0,
        "padding_tokens": packing.padding_tokens if packing else 0,
    }


def write_dataset(
    output_dir: Path, packed, dependencies: datasets.Dataset, counts: dict, config: BuildConfig
) -> None:
    """Write both configs as parquet shards (≤ 500 MB each) and the dataset card: the folder a push uploads.

    Shard names carry the table's fingerprint. `datasets` caches a local folder's configs under a key made of
    the card's path patterns alone, so a rebuild with other content must change the patterns, or
    `load_dataset(folder)` would keep returning the previous build.
    """
    data_files = {}
    for name, table in (("default", packed), ("dependencies", dependencies)):
        folder = output_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.parquet"):
            stale.unlink()
        if table is None:
            continue
        tag = table._fingerprint[:12]
        num_shards = max(1, math.ceil(table.data.nbytes / 500e6))
        for index in range(num_shards):
            shard = table.shard(num_shards, index, contiguous=True)
            shard.to_parquet(str(folder / f"train-{tag}-{index:05d}-of-{num_shards:05d}.parquet"))
        data_files[name] = f"{name}/train-{tag}-*.parquet"
    (output_dir / "build_config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    (output_dir / "README.md").write_text(render_dataset_card(config, counts, data_files))


def push_folder(output_dir: Path, config: BuildConfig) -> None:
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(config.hub_repo_id, repo_type="dataset", private=config.hub_private, exist_ok=True)
    api.upload_folder(
        repo_id=config.hub_repo_id,
        repo_type="dataset",
        folder_path=str(output_dir),
        ignore_patterns=[".cache/*", ".cache/**"],
    )


def print_summary(counts: dict, output_dir: str) -> None:
    seconds = counts["seconds"]
    statuses = ", ".join(f"{status} {n}" for status, n in counts["roots_by_status"].items())
    rows = [
        ("roots", f"{counts['roots']} ({statuses}); {counts['roots_empty']} empty dropped"),
        ("corpus documents", counts["corpus_documents"]),
        ("high-entropy positions", counts["high_entropy_positions"]),
        (
            "candidates tried",
            f"{counts['candidates_tried']} ({counts['distinct_candidates_tried']} distinct per root); "
            f"excluded: {counts['candidates_excluded_self']} self, {counts['candidates_excluded_near_duplicate']} near-duplicate",
        ),
        (
            "verified dependencies",
            f"{counts['verified_dependencies']} in {counts['verified_contexts']} contexts, mean ΔI {counts['mean_delta_i']}",
        ),
        (
            "units",
            f"{counts['units']} in sequences, {counts['units_left_over']} left over in under-filled rows; "
            f"{counts['contexts_trimmed_for_length']} contexts trimmed for length",
        ),
        ("sequences", counts["sequences"]),
        ("tokens", f"{counts['tokens']} ({counts['padding_tokens']} padding)"),
        (
            "seconds",
            ", ".join(f"{stage} {s}" for stage, s in seconds.items())
            + f"; total {sum(seconds.values()):.1f}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\nEntropyLong build written to {output_dir}", file=sys.stderr)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}", file=sys.stderr)
