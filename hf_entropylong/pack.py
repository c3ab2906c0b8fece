"""Training units and their packing into sequences of exactly `max_length` tokens.

Documents. A document is encoded as the tokenizer's ids (with its BOS when it adds one) followed by EOS; the same
encoding is used when verifying, so what the model saw then is what it trains on.

Units. A unit is [context_π(1); …; context_π(m); root]: the verified contexts in a random order (`shuffle`, the
paper's default) or in the order of their first high-entropy position (`sequence`), then the root. A unit longer
than `max_length` drops its lowest-ΔI contexts, one at a time, until it fits; a root longer than `max_length` on
its own raises `UnitTooLongError` (the caller counts it).

Packing. Best-fit-decreasing (TRL's `pack_dataset(strategy="bfd")`) over batches of `units_per_batch` units:
units are never split; each unit goes into the fullest row that still has room for it, longest units first.
TRL packs only token-aligned list columns, so a unit's provenance (root id, context ids) cannot ride along as
is: each unit carries its row number as a token-aligned int32 column, and the provenance is looked up from it
after binning. Nothing is dropped: the space a row has left is filled with `pad_token_id`, which becomes the
row's last span in `seq_lengths` and is counted in `num_padding_tokens` (only the last rows of each batch
carry much padding). Rows are then shuffled with a seed. `packing_stats` gives the counts for the dataset card.

In the build, the units stage (`UNIT_STAGE`, `make_units`) makes each `ok` root's unit, shuffled with a
per-root seed (`seed`/root id, so a resumed build shuffles identically); `pack_sequences` then packs every unit
once, holds back the rows best-fit-decreasing leaves less than `min_row_fill` full, and decodes the rest.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import datasets
import numpy as np
import pyarrow.compute as pc
from trl import pack_dataset

from .models import encode_document
from .stage import Stage, setting


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


@dataclass
class PackSettings:
    """The packed training sequences."""

    max_seq_length: int = setting(131_072, help="Tokens per packed sequence (the paper: 131,072).")
    min_row_fill: float = setting(
        0.5, help="Hold back packed rows whose units fill less than this share (the last rows of a packing)."
    )

    def __post_init__(self):
        if self.max_seq_length < 2:
            raise ValueError(f"max_seq_length must be at least 2 tokens, got {self.max_seq_length}.")
        if not 0 <= self.min_row_fill <= 1:
            raise ValueError(f"min_row_fill must be in [0, 1], got {self.min_row_fill}.")


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


@dataclass
class PackingStats:
    """Counts of a packed dataset, for the dataset card."""

    rows: int
    units: int
    tokens: int
    unit_tokens: int
    padding_tokens: int


def packing_stats(packed: datasets.Dataset) -> PackingStats:
    """Rows, units, tokens, and padding of a dataset returned by `pack_units`."""
    rows = tokens = padding = units = 0
    for batch in packed.with_format("arrow").iter(batch_size=10_000):  # arrow batches honour select/filter
        rows += batch.num_rows
        tokens += pc.sum(pc.list_value_length(batch["input_ids"])).as_py() or 0
        padding += pc.sum(batch["num_padding_tokens"]).as_py() or 0
        units += pc.sum(pc.list_value_length(batch["root_ids"])).as_py() or 0
    return PackingStats(rows, units, tokens, tokens - padding, padding)


def pack_units(
    units: datasets.Dataset,
    max_length: int,
    pad_token_id: int,
    seed: int = 0,
    units_per_batch: int = 10_000,
) -> datasets.Dataset:
    """Pack `units` into rows of exactly `max_length` tokens (best-fit-decreasing; units never split).

    Args:
        units: columns `input_ids` (list[int], one unit each), `root_id` (str), `context_ids` (list[str]).
        max_length: the row length.
        pad_token_id: the id that fills the end of a row.
        seed: seed of the row shuffle.
        units_per_batch: units binned together (more packs tighter and holds more in memory).

    Returns:
        Rows with `input_ids` (exactly `max_length`), `seq_lengths` (the unit lengths, then the padding tail when
        there is one; they sum to `max_length`), `num_padding_tokens`, `root_ids` and `context_ids` (one entry
        per unit, in row order). `packing_stats` gives the counts.
    """
    missing = {"input_ids", "root_id", "context_ids"} - set(units.column_names)
    if missing:
        raise ValueError(f"units lack the column(s) {sorted(missing)} (columns: {units.column_names}).")
    lengths = np.concatenate(
        [
            pc.list_value_length(batch["input_ids"]).to_numpy(zero_copy_only=False)
            for batch in units.select_columns(["input_ids"]).with_format("arrow").iter(batch_size=100_000)
        ]
        or [np.zeros(0, np.int64)]
    )
    for bad, problem in (
        (lengths > max_length, f"more than max_length={max_length}"),
        (lengths == 0, "empty"),
    ):
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(f"unit {first} has {lengths[first]} tokens, {problem}.")
    features = datasets.Features(
        {
            "input_ids": units.features["input_ids"],
            "seq_lengths": datasets.List(datasets.Value("int32")),
            "num_padding_tokens": datasets.Value("int32"),
            "root_ids": datasets.List(datasets.Value("string")),
            "context_ids": datasets.List(datasets.List(datasets.Value("string"))),
        }
    )
    if len(units) == 0:
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    tagged = units.select_columns(["input_ids"]).map(
        lambda batch, indices: {
            "unit": [[i] * len(ids) for i, ids in zip(indices, batch["input_ids"], strict=True)]
        },
        batched=True,
        with_indices=True,
        features=datasets.Features(
            {"input_ids": units.features["input_ids"], "unit": datasets.List(datasets.Value("int32"))}
        ),
        desc="Tagging units",
    )
    bins = pack_dataset(
        tagged,
        max_length,
        strategy="bfd",
        map_kwargs={"batch_size": units_per_batch, "desc": "Packing units"},
    )
    provenance = units.select_columns(["root_id", "context_ids"])

    def finish(batch):
        out = {name: [] for name in features}
        for ids, spans, tags in zip(batch["input_ids"], batch["seq_lengths"], batch["unit"], strict=True):
            padding = max_length - len(ids)
            starts = np.cumsum([0, *spans[:-1]])
            members = provenance[[int(tags[start]) for start in starts]]
            out["input_ids"].append(list(ids) + [pad_token_id] * padding)
            out["seq_lengths"].append(list(spans) + ([padding] if padding else []))
            out["num_padding_tokens"].append(padding)
            out["root_ids"].append(members["root_id"])
            out["context_ids"].append(members["context_ids"])
        return out

    packed = bins.map(
        finish, batched=True, remove_columns=bins.column_names, features=features, desc="Padding rows"
    )
    return packed.shuffle(seed=seed).flatten_indices()


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


def make_units(batch: dict, settings: UnitSettings, inputs) -> dict:
    """The units stage: each root with verified contexts becomes [contexts; root], within `max_seq_length`.

    Besides the unit, it records the length of each context placed, in order, and the dependency distance of every
    (context, position) pair it serves (`dependency_distances`). A context without ΔI (the baselines') counts as
    ΔI 0 when contexts must be dropped for length.
    """
    tokenizer = inputs.tokenizer
    out = {name: [] for name in UNIT_COLUMNS}
    for root_id, text, verified in zip(batch["id"], batch["text"], batch["verified_contexts"], strict=True):
        unit, kept, contexts = [], [], []
        if verified:
            contexts = [
                encode_document(tokenizer, passage)
                for passage in inputs.corpus[[c["corpus_index"] for c in verified]]["text"]
            ]
            scores = [c["delta_i"] if np.isfinite(c["delta_i"]) else 0.0 for c in verified]
            try:
                unit, kept = make_unit(
                    encode_document(tokenizer, text),
                    contexts,
                    scores,
                    order=settings.order,
                    rng=random.Random(f"{inputs.seed}/{root_id}"),
                    max_length=inputs.max_seq_length,
                )
            except UnitTooLongError:
                pass
        lengths = [len(contexts[i]) for i in kept]
        out["unit_input_ids"].append(unit)
        out["unit_context_ids"].append([verified[i]["corpus_id"] for i in kept])
        out["unit_context_lengths"].append(lengths)
        out["num_unit_tokens"].append(len(unit))
        out["num_contexts_trimmed"].append(len(verified) - len(kept))
        out["dependency_distances"].append(
            dependency_distances(lengths, [verified[i]["token_indices"] for i in kept])
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


def pack_sequences(
    roots: datasets.Dataset, settings: PackSettings, tokenizer, seed: int
) -> tuple[datasets.Dataset | None, int]:
    """Pack the units of the units stage's rows into decoded sequences of exactly `max_seq_length` tokens.

    Args:
        roots: rows with `id`, `unit_input_ids` (empty for roots without a unit) and `unit_context_ids`.
        settings: the sequence length and the least share of a row its units must fill.
        tokenizer: decodes the rows into `text`; its pad token (else EOS) fills them.
        seed: seed of the row shuffle.

    Returns:
        The packed rows (`pack_units`' columns plus `text`; `None` when no row is left) and the number of units
        held back in under-filled rows.
    """
    units = roots.filter(lambda batch: [len(ids) > 0 for ids in batch["unit_input_ids"]], batched=True)
    if len(units) == 0:
        return None, 0
    units = units.select_columns(["unit_input_ids", "id", "unit_context_ids"]).rename_columns(
        {"unit_input_ids": "input_ids", "id": "root_id", "unit_context_ids": "context_ids"}
    )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    packed = pack_units(units, settings.max_seq_length, pad_id, seed=seed)
    most_padding = int((1 - settings.min_row_fill) * settings.max_seq_length)
    filled = packed.filter(
        lambda batch: [n <= most_padding for n in batch["num_padding_tokens"]], batched=True, desc="Row fill"
    )
    units_left_over = len(units) - sum(map(len, filled["root_ids"]))
    if len(filled) == 0:
        return None, units_left_over
    decoded = filled.flatten_indices().map(
        lambda batch: {"text": tokenizer.batch_decode(batch["input_ids"])}, batched=True, desc="Decoding rows"
    )
    return decoded, units_left_over
