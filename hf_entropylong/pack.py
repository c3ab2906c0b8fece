"""Training units and their packing into sequences of exactly `max_length` tokens.

A document is encoded as the tokenizer's ids (with its BOS when it adds one) followed by EOS; the same encoding
is used when verifying, so what the model saw then is what it trains on. A unit is
[context_π(1); …; context_π(m); root]: the verified contexts in a random order (`shuffle`) or in the order of
their first position (`sequence`), then the root. A unit longer than `max_length` drops its lowest-ΔI contexts
until it fits.

Packing is best-fit-decreasing (TRL's `pack_dataset(strategy="bfd")`): units are never split, and the space a
row has left is filled with padding, which becomes the row's last span in `seq_lengths` and is counted in
`num_padding_tokens`. Rows are then shuffled with a seed.
"""

from __future__ import annotations

import random

import datasets
from trl import pack_dataset


class UnitTooLongError(ValueError):
    """The root alone is longer than the sequence length."""


def encode_document(tokenizer, text: str) -> list[int]:
    """The tokenizer's ids of `text` (BOS included when the tokenizer adds one), then EOS."""
    return tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]


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
        scores: ΔI of each context (the lowest go first when the unit is too long).
        order: `shuffle` (random order from `rng`) or `sequence` (the given order).
        rng: the random source for `shuffle`.
        max_length: the longest unit allowed.

    Returns:
        The unit's token ids and the indices of the contexts kept, in the order placed.
    """
    if max_length is not None and len(root_ids) > max_length:
        raise UnitTooLongError(
            f"root of {len(root_ids)} tokens is longer than the sequence length {max_length}"
        )
    kept = list(range(len(contexts)))
    if max_length is not None:
        budget = max_length - len(root_ids)
        for i in sorted(kept, key=lambda i: scores[i]):
            if sum(len(contexts[j]) for j in kept) <= budget:
                break
            kept.remove(i)
    if order == "shuffle":
        (rng or random.Random()).shuffle(kept)
    elif order != "sequence":
        raise ValueError(f"order must be 'shuffle' or 'sequence', got {order!r}.")
    return [token for i in kept for token in contexts[i]] + list(root_ids), kept


def pack_units(
    units: datasets.Dataset, max_length: int, pad_token_id: int, seed: int = 0
) -> datasets.Dataset:
    """Pack `units` (`input_ids`, `root_id`, `context_ids`) into rows of exactly `max_length` tokens.

    Returns rows with `input_ids`, `seq_lengths` (unit lengths, then the padding tail when there is one; they sum
    to `max_length`), `num_padding_tokens`, `root_ids` and `context_ids`.
    """
    lengths = [len(ids) for ids in units["input_ids"]]
    too_long = [i for i, n in enumerate(lengths) if n > max_length]
    if too_long:
        raise ValueError(
            f"unit {too_long[0]} has {lengths[too_long[0]]} tokens, more than max_length={max_length}."
        )
    # BFD packs list columns token-aligned; the unit's row number rides along as a token-aligned column.
    tagged = units.map(
        lambda batch, indices: {
            "unit": [[i] * len(ids) for i, ids in zip(indices, batch["input_ids"], strict=True)]
        },
        batched=True,
        with_indices=True,
        remove_columns=["root_id", "context_ids"],
        desc="Tagging units",
    )
    bins = pack_dataset(tagged, max_length, strategy="bfd")
    root_ids, context_ids = units["root_id"], units["context_ids"]

    def finish(batch):
        out = {
            "input_ids": [],
            "seq_lengths": [],
            "num_padding_tokens": [],
            "root_ids": [],
            "context_ids": [],
        }
        for ids, spans, tags in zip(batch["input_ids"], batch["seq_lengths"], batch["unit"], strict=True):
            padding = max_length - len(ids)
            order, offset = [], 0
            for span in spans:
                order.append(tags[offset])
                offset += span
            out["input_ids"].append(list(ids) + [pad_token_id] * padding)
            out["seq_lengths"].append(list(spans) + ([padding] if padding else []))
            out["num_padding_tokens"].append(padding)
            out["root_ids"].append([root_ids[i] for i in order])
            out["context_ids"].append([context_ids[i] for i in order])
        return out

    packed = bins.map(finish, batched=True, remove_columns=bins.column_names, desc="Padding rows")
    return packed.shuffle(seed=seed).flatten_indices()
