"""What the methods that do not verify share: their columns in EntropyLong's schema, their first stage's frame, and
how they fill a whole row.

Every method's per-root table has EntropyLong's columns (`builder.runner.conform` adds what a method's stages do
not write, empty). A method that places documents without the ΔI test writes them as `contexts` with `verified`
false and ΔI NaN, and as `candidates` with `kept` true; its keywords or meta-chunks are its `positions` (entropy
NaN, `query` the keyword or the chunk), so a position's candidates are the documents found for it.

Full rows. The baselines follow their originals in filling a whole row with one sample that trains as one attention
span: `assemble_row` joins the sample's pieces (documents, chunks) into one plain text, tokenizes it once
(`models.encode_documents`: the tokenizer's BOS when it adds one, one EOS at the end) and cuts it to exactly
`max_seq_length` tokens, keeping its start (NExtLong) or its end (concat and Quest, whose root comes last); a
sample that falls short is dropped. `token_lengths` gives the pieces' lengths to choose how many fill a row.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..models import encode_documents
from ..stages import Stage
from ..stages.entropy import ENTROPY_STAGE
from ..stages.retrieval import RETRIEVAL_STAGE
from ..stages.units import UNIT_COLUMNS, add_unit
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
FILL_MARGIN = 1.02
"""Documents are chosen to fill 2% more than the row: tokenizing the joined text merges a few tokens."""


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


def token_at(offsets: list[tuple[int, int]], char: int) -> int:
    """The first text token that ends after character `char` (-1 when there is none)."""
    return next((t for t, (start, end) in enumerate(offsets) if start < end and end > char), -1)


def token_lengths(tokenizer, texts: list[str]) -> list[int]:
    """Tokens of each text alone, without special tokens (to choose how many pieces fill a row)."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def assemble_row(
    tokenizer,
    pieces: list[str],
    separator: str,
    max_length: int,
    keep: Literal["start", "end"],
    points: list[int] = (),
) -> tuple[list[int], list[tuple[int, int]], list[int]] | None:
    """`pieces` joined by `separator`, tokenized once, cut to exactly `max_length` tokens keeping its start or end.

    Returns:
        The row's ids; each piece's token span in the row (start, end), empty (start == end) for a piece cut
        away; and the row token holding each of `points` (characters of the joined text; -1 when cut away). None
        when the text has fewer than `max_length` tokens.
    """
    text = separator.join(pieces)
    encoded = encode_documents(tokenizer, [text])
    ids, offsets = encoded.ids[0], encoded.offsets[0]
    if len(ids) < max_length:
        return None
    cut = 0 if keep == "start" else len(ids) - max_length
    ids, offsets = ids[cut : cut + max_length], offsets[cut : cut + max_length]
    text_tokens = np.array([t for t, (start, end) in enumerate(offsets) if start < end], dtype=np.int64)
    starts = np.array([offsets[t][0] for t in text_tokens], dtype=np.int64)
    ends = np.array([offsets[t][1] for t in text_tokens], dtype=np.int64)
    spans, char = [], 0
    for piece in pieces:
        first = int(np.searchsorted(ends, char, side="right"))
        last = int(np.searchsorted(starts, char + len(piece), side="left"))
        if last > first:
            spans.append((int(text_tokens[first]), int(text_tokens[last - 1]) + 1))
        else:
            position = int(text_tokens[first]) if first < len(text_tokens) else max_length
            spans.append((position, position))
        char += len(piece) + len(separator)
    located = [int(np.searchsorted(ends, point, side="right")) for point in points]
    return ids, spans, [int(text_tokens[t]) if t < len(text_tokens) else -1 for t in located]


FILL_SEPARATOR = "\n\n"
"""Joins the documents of a concat or Quest row (the separator of the released Quest-style concatenation)."""


def fill_rows(batch: dict, settings: NoSettings, inputs) -> dict:
    """The fill stage of concat and Quest: [documents; root] as one text, tokenized once, cut to exactly
    `max_seq_length` tokens at its start (the first document is cut; the root stays whole); a root whose row falls
    short gets the status `too_short`.

    A document's length is its tokens in the row; a dependency distance is the row tokens between the end of a
    document and the root token it serves (a Quest keyword; concat's documents serve none).
    """
    out = {name: [] for name in UNIT_COLUMNS} | {"status": list(batch["status"])}
    for row, (text, positions, contexts) in enumerate(
        zip(batch["text"], batch["positions"], batch["contexts"], strict=True)
    ):
        assembled = None
        if out["status"][row] == "ok":
            documents = inputs.corpus[[c["corpus_index"] for c in contexts]]["text"]
            root_start = sum(len(d) + len(FILL_SEPARATOR) for d in documents)
            by_token = {p["token_index"]: root_start + p["char_start"] for p in positions}
            assembled = assemble_row(
                inputs.tokenizer, [*documents, text], FILL_SEPARATOR, inputs.max_seq_length, "end",
                points=list(by_token.values()),
            )  # fmt: skip
            if assembled is None:
                out["status"][row] = "too_short"
        unit, spans, points = assembled or ([], [], [])
        at = dict(zip(by_token, points, strict=True)) if assembled else {}
        placed = [i for i, (start, end) in enumerate(spans[:-1]) if end > start]
        distances = [
            at[p] - spans[i][1] for i in placed for p in contexts[i]["token_indices"] if at.get(p, -1) >= 0
        ]
        add_unit(
            out,
            unit,
            [contexts[i]["corpus_id"] for i in placed],
            [spans[i][1] - spans[i][0] for i in placed],
            len(contexts) - len(placed) if unit else 0,
            distances,
        )
    return out


FILL_STAGE = Stage(
    name="fill",
    settings=NoSettings,
    inputs=("tokenizer", "corpus", "max_seq_length"),
    columns=UNIT_COLUMNS,
    drop_reasons=("too_short",),
    function=fill_rows,
    rows_per_call=16,
)
