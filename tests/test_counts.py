"""Every count of a build (stats.json, the card, the summary) recounted from its published tables."""

import json
import math

import numpy as np
import pytest
from datasets import load_dataset

pytestmark = pytest.mark.slow


def recount(output_dir) -> dict:
    """The counts of stats.json, computed here from the two published configs alone."""
    roots = load_dataset(str(output_dir), "dependencies", split="train").to_list()
    rows = load_dataset(str(output_dir), split="train").to_list()
    candidates = [c for root in roots for c in root["candidates"]]
    kept = [c for c in candidates if c["kept"]]
    in_unit = [root for root in roots if root["num_unit_tokens"]]
    distances = [d for root in in_unit for d in root["dependency_distances"]]
    statuses = {}
    for root in roots:
        statuses[root["status"]] = statuses.get(root["status"], 0) + 1
    return {
        "roots": len(roots),
        "roots_by_status": statuses,
        "high_entropy_positions": sum(
            p["entropy"] is not None and math.isfinite(p["entropy"])
            for root in roots
            for p in root["positions"]
        ),
        "candidates_excluded_self": sum(root["num_excluded_self"] for root in roots),
        "candidates_excluded_near_duplicate": sum(root["num_excluded_near_duplicate"] for root in roots),
        "candidates_tried": len(candidates),
        "distinct_candidates_tried": sum(len({c["corpus_id"] for c in root["candidates"]}) for root in roots),
        "verified_dependencies": len(kept),
        "verified_contexts": sum(len(root["contexts"]) for root in roots),
        "mean_delta_i": round(float(np.mean([c["delta_i"] for c in kept])), 4) if kept else None,
        "contexts_trimmed_for_length": sum(root["num_contexts_trimmed"] for root in roots),
        "units": sum(len(row["root_ids"]) for row in rows),
        "sequences": len(rows),
        "tokens": sum(len(row["input_ids"]) for row in rows),
        "padding_tokens": sum(row["num_padding_tokens"] for row in rows),
        "mean_dependency_distance": round(float(np.mean(distances)), 1) if distances else None,
    }


def test_stats_and_card_count_what_the_tables_hold(demo_build):
    output_dir, counts = demo_build
    stats = json.loads((output_dir / "stats.json").read_text())
    expected = recount(output_dir)
    for key, value in expected.items():
        got = stats[key]
        if key == "roots_by_status":
            got = {status: n for status, n in got.items() if n}  # statuses no root ended with are listed as 0
        assert got == value, key
    assert (
        expected["distinct_candidates_tried"] < expected["candidates_tried"]
    )  # a document found twice counts once
    card = (output_dir / "README.md").read_text()
    assert (
        f"| {stats['candidates_tried']} ({stats['distinct_candidates_tried']} distinct documents per root, summed) |"
        in card
    )
    assert f"| {stats['verified_dependencies']} |" in card and f"| {stats['verified_contexts']} |" in card
