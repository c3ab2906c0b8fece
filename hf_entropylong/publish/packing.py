"""Packing training units into sequences of exactly `max_seq_length` tokens.

Best-fit-decreasing (TRL's `pack_dataset(strategy="bfd")`) over batches of `units_per_batch` units:
units are never split; each unit goes into the fullest row that still has room for it, longest units first.
TRL packs only token-aligned list columns, so a unit's provenance (root id, context ids) cannot ride along as
is: each unit carries its row number as a token-aligned int32 column, and the provenance is looked up from it
after binning. Nothing is dropped: the space a row has left is filled with `pad_token_id`, which becomes the
row's last span in `seq_lengths` and is counted in `num_padding_tokens` (only the last rows of each batch
carry much padding). Rows are then shuffled with a seed. `packing_stats` gives the counts for the dataset card.

In the build, `pack_sequences` packs every unit of the units stage once, holds back the rows best-fit-decreasing
leaves less than `min_row_fill` full, and decodes the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import numpy as np
import pyarrow.compute as pc
from trl import pack_dataset

from ..settings import setting


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
