"""Training units: a root and the contexts placed before it.

Documents. A document is encoded as the tokenizer's ids (with its BOS when it adds one) followed by EOS
(`models.encode_documents`); the same encoding is used when verifying, so what the model saw then is what it
trains on.

Units. A unit is [context_π(1); …; context_π(m); root]: the verified contexts in a random order (`shuffle`, the
paper's default) or in the order of their first high-entropy position (`sequence`), then the root. A unit longer
than `max_length` drops its lowest-ΔI contexts, one at a time, until it fits; a root longer than `max_length` on
its own raises `UnitTooLongError` (the caller counts it).

In the build, the units stage (`UNIT_STAGE`, `make_units`) makes each `ok` root's unit, shuffled with a
per-root seed (`seed`/root id, so a resumed build shuffles identically); `publish.packing` then packs the units
into exact-length rows. Every method's unit stage writes `UNIT_COLUMNS` through `add_unit`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import datasets
import numpy as np

from ..models import encode_documents
from ..settings import setting
from . import Stage


@dataclass
class UnitSettings:
    """How a root and its verified contexts form a training unit."""

    order: Literal["shuffle", "sequence"] = setting(
        "shuffle",
        help="Contexts in a random order (shuffle, the paper's default) or in position order (sequence).",
    )

    def __post_init__(self):
        if self.order not in ("shuffle", "sequence"):
            raise ValueError(f"order must be 'shuffle' or 'sequence', got {self.order!r}.")


class UnitTooLongError(ValueError):
    """The root alone is longer than the sequence length."""


def make_unit(
    root_ids: list[int],
    contexts: list[list[int]],
    scores: list[float],
    order: str = "shuffle",
    rng: random.Random | None = None,
    max_length: int | None = None,
) -> tuple[list[int], list[int]]:
    """Concatenate contexts and root into one unit.

    Args:
        root_ids: the encoded root.
        contexts: encoded verified contexts, in the order of their first high-entropy position.
        scores: ΔI of each context (the lowest are dropped first when the unit is too long; ties drop the later).
        order: `shuffle` (random order from `rng`) or `sequence` (the given order).
        rng: the random source for `shuffle` (pass a seeded one for reproducible builds).
        max_length: the longest unit allowed.

    Returns:
        The unit's token ids and the indices of the contexts kept, in the order placed.

    Raises:
        UnitTooLongError: the root alone is longer than `max_length`.
    """
    if order not in ("shuffle", "sequence"):
        raise ValueError(f"order must be 'shuffle' or 'sequence', got {order!r}.")
    if len(scores) != len(contexts):
        raise ValueError(f"{len(contexts)} contexts but {len(scores)} scores.")
    if max_length is not None and len(root_ids) > max_length:
        raise UnitTooLongError(
            f"root of {len(root_ids)} tokens is longer than the sequence length {max_length}"
        )
    kept = list(range(len(contexts)))
    if max_length is not None:
        excess = len(root_ids) + sum(len(context) for context in contexts) - max_length
        for i in sorted(kept, key=lambda i: (scores[i], -i)):
            if excess <= 0:
                break
            kept.remove(i)
            excess -= len(contexts[i])
    if order == "shuffle":
        (rng or random.Random()).shuffle(kept)
    return [token for i in kept for token in contexts[i]] + list(root_ids), kept


def dependency_distances(context_lengths: list[int], context_positions: list[list[int]]) -> list[int]:
    """Tokens between each placed context and each root position it serves, inside the unit [contexts; root].

    Args:
        context_lengths: tokens of each context, in unit order.
        context_positions: for each context, the root token indices it serves.
    """
    after = np.cumsum([0, *context_lengths[::-1]])[::-1][1:]  # tokens of the contexts placed after each one
    return [
        int(tokens) + p for tokens, positions in zip(after, context_positions, strict=True) for p in positions
    ]


UNIT_COLUMNS = {
    "unit_input_ids": datasets.List(datasets.Value("int64")),
    "unit_context_ids": datasets.List(datasets.Value("string")),
    "unit_context_lengths": datasets.List(datasets.Value("int32")),
    "num_unit_tokens": datasets.Value("int32"),
    "num_contexts_trimmed": datasets.Value("int32"),
    "dependency_distances": datasets.List(datasets.Value("int32")),
}
"""The columns every method's unit stage writes (see `make_units`)."""


def add_unit(
    out: dict, unit: list[int], context_ids: list[str], lengths: list[int], trimmed: int, distances
) -> None:
    """Append one root's unit to the `UNIT_COLUMNS` of a stage's output (an empty unit: the root has none)."""
    out["unit_input_ids"].append(unit)
    out["unit_context_ids"].append(context_ids)
    out["unit_context_lengths"].append(lengths)
    out["num_unit_tokens"].append(len(unit))
    out["num_contexts_trimmed"].append(trimmed)
    out["dependency_distances"].append(distances)


def make_units(batch: dict, settings: UnitSettings, inputs) -> dict:
    """The units stage: each root with contexts becomes [contexts; root], within `max_seq_length`.

    Besides the unit, it records the length of each context placed, in order, and the dependency distance of every
    (context, position) pair it serves (`dependency_distances`). A context without ΔI (the baselines') counts as
    ΔI 0 when contexts must be dropped for length.
    """
    tokenizer = inputs.tokenizer
    out = {name: [] for name in UNIT_COLUMNS}
    for root_id, text, placed in zip(batch["id"], batch["text"], batch["contexts"], strict=True):
        unit, kept, contexts = [], [], []
        if placed:
            contexts = encode_documents(
                tokenizer, inputs.corpus[[c["corpus_index"] for c in placed]]["text"]
            ).ids
            scores = [c["delta_i"] if np.isfinite(c["delta_i"]) else 0.0 for c in placed]
            try:
                unit, kept = make_unit(
                    encode_documents(tokenizer, [text]).ids[0],
                    contexts,
                    scores,
                    order=settings.order,
                    rng=random.Random(f"{inputs.seed}/{root_id}"),
                    max_length=inputs.max_seq_length,
                )
            except UnitTooLongError:
                pass
        lengths = [len(contexts[i]) for i in kept]
        distances = dependency_distances(lengths, [placed[i]["token_indices"] for i in kept])
        add_unit(
            out, unit, [placed[i]["corpus_id"] for i in kept], lengths, len(placed) - len(kept), distances
        )
    return out


UNIT_STAGE = Stage(
    name="units",
    settings=UnitSettings,
    inputs=("tokenizer", "corpus", "max_seq_length", "seed"),
    columns=UNIT_COLUMNS,
    drop_reasons=(),
    function=make_units,
    rows_per_call=64,
)
