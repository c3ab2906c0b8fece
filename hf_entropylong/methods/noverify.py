"""NoVerify, the paper's main ablation: entropy → retrieval → top1 → units.

Every high-entropy position keeps its top-retrieved document, with no ΔI test (the paper: −1.55 RULER average
against EntropyLong). The entropy and retrieval stages are EntropyLong's own, with the same cache keys, so a build
sharing EntropyLong's `cache_dir` reuses them.
"""

from __future__ import annotations

from collections import defaultdict

from ..stages import Stage
from ..stages.entropy import ENTROPY_STAGE
from ..stages.retrieval import RETRIEVAL_STAGE
from ..stages.units import UNIT_STAGE
from .common import CANDIDATE, CONTEXT_COLUMNS, NoSettings, complete


def top_one(batch: dict, settings: NoSettings, inputs) -> dict:
    """The top1 stage: every position keeps its best retrieved document, unverified."""
    out = {"candidates": [], "contexts": []}
    for retrieved in batch["retrieved"]:
        best: dict[int, dict] = {}
        for hit in retrieved:  # best first within each position
            best.setdefault(hit["token_index"], hit)
        served: dict[int, list[int]] = defaultdict(list)
        for position, hit in best.items():
            served[hit["corpus_index"]].append(position)
        out["candidates"].append(
            [complete({**hit, "kept": best[hit["token_index"]] is hit}, CANDIDATE) for hit in retrieved]
        )
        contexts = [
            {"corpus_index": row, "corpus_id": next(h["corpus_id"] for h in retrieved if h["corpus_index"] == row),
             "delta_i": float("nan"), "token_indices": sorted(positions), "verified": False}
            for row, positions in served.items()
        ]  # fmt: skip
        out["contexts"].append(sorted(contexts, key=lambda c: min(c["token_indices"])))
    return out


TOP1_STAGE = Stage(
    name="top1",
    settings=NoSettings,
    inputs=(),
    columns=CONTEXT_COLUMNS,
    drop_reasons=(),
    function=top_one,
)

STAGES = (ENTROPY_STAGE, RETRIEVAL_STAGE, TOP1_STAGE, UNIT_STAGE)
