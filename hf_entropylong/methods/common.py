"""What the methods that do not verify share: their columns in EntropyLong's schema, and their first stage's frame.

Every method's per-root table has EntropyLong's columns (`builder.runner.conform` adds what a method's stages do
not write, empty). A method that places documents without the ΔI test writes them as `contexts` with `verified`
false and ΔI NaN, and as `candidates` with `kept` true; its keywords or meta-chunks are its `positions` (entropy
NaN, `query` the keyword or the chunk), so a position's candidates are the documents found for it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..models import encode_documents
from ..stages.entropy import ENTROPY_STAGE
from ..stages.retrieval import RETRIEVAL_STAGE
from ..stages.verify import VERIFY_STAGE

POSITION = ENTROPY_STAGE.columns["positions"].feature
CANDIDATE = VERIFY_STAGE.columns["candidates"].feature
CONTEXT_COLUMNS = {name: VERIFY_STAGE.columns[name] for name in ("candidates", "contexts")}
FIRST_COLUMNS = {
    **{name: ENTROPY_STAGE.columns[name] for name in ("num_tokens", "positions", "status")},
    **CONTEXT_COLUMNS,
    **{name: RETRIEVAL_STAGE.columns[name] for name in ("num_excluded_self", "num_excluded_near_duplicate")},
}
"""The columns a baseline's first stage writes (it replaces entropy, retrieval and verification)."""
FIRST_DROP_REASONS = ("root_too_long", "no_candidate")


@dataclass
class NoSettings:
    """A stage with no setting of its own."""


def complete(record: dict, struct: dict) -> dict:
    """`record` with every field of `struct` it lacks: NaN for floats, -1 for integers, "" for strings."""
    missing = {}
    for name, feature in struct.items():
        if name not in record:
            kind = feature.dtype
            missing[name] = float("nan") if kind.startswith("float") else -1 if kind.startswith("int") else ""
    return {**record, **missing}


def placed(documents: list[tuple[int, str, float, list[int]]]) -> tuple[list[dict], list[dict]]:
    """Candidates and contexts of documents placed unverified: (corpus row, id, similarity, positions served)."""
    candidates = [
        complete({"token_index": p, "corpus_index": row, "corpus_id": cid, "similarity": sim, "kept": True},
                 CANDIDATE)
        for row, cid, sim, positions in documents for p in positions or [-1]
    ]  # fmt: skip
    contexts = [
        {"corpus_index": row, "corpus_id": cid, "delta_i": float("nan"), "token_indices": positions,
         "verified": False}
        for row, cid, _, positions in documents
    ]  # fmt: skip
    return candidates, contexts


def start_first_stage(batch: dict, inputs) -> tuple[dict, list[bool], list[list[tuple[int, int]]]]:
    """The columns a baseline's first stage writes, with root_too_long marked; which roots fit; and each root's
    token character offsets (`models.encode_documents`, as every stage encodes a root)."""
    documents, offsets = encode_documents(inputs.tokenizer, batch["text"])
    fits = [len(ids) <= inputs.max_seq_length for ids in documents]
    out = {name: [] for name in FIRST_COLUMNS}
    out["num_tokens"] = [len(ids) for ids in documents]
    out["status"] = ["ok" if ok else "root_too_long" for ok in fits]
    return out, fits, offsets


def finish_row(out: dict, row: int, positions, documents, excluded: Counter) -> None:
    """Append one root's positions, placed documents (`placed`) and exclusions to a first stage's output."""
    candidates, contexts = placed(documents)
    out["positions"].append(positions)
    out["candidates"].append(candidates)
    out["contexts"].append(contexts)
    out["num_excluded_self"].append(excluded["self"])
    out["num_excluded_near_duplicate"].append(excluded["near_duplicate"])
    if out["status"][row] == "ok" and not documents:
        out["status"][row] = "no_candidate"
