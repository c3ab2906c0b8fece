import random

import datasets
import pytest

from hf_entropylong.publish.packing import pack_units, packing_stats
from hf_entropylong.stages.units import UnitTooLongError, make_unit


def test_units_shuffle_and_sequence_orders():
    root, contexts = [9, 9], [[1], [2, 2], [3, 3, 3], [4]]
    unit, kept = make_unit(root, contexts, [0.5] * 4, order="sequence")
    assert kept == [0, 1, 2, 3] and unit == [1, 2, 2, 3, 3, 3, 4, 9, 9]
    shuffled = [make_unit(root, contexts, [0.5] * 4, "shuffle", random.Random(seed))[1] for seed in range(8)]
    assert all(sorted(order) == [0, 1, 2, 3] for order in shuffled)
    assert len({tuple(order) for order in shuffled}) > 1
    again = make_unit(root, contexts, [0.5] * 4, "shuffle", random.Random(3))
    assert again == make_unit(root, contexts, [0.5] * 4, "shuffle", random.Random(3))  # seeded: reproducible
    unit, kept = again
    assert unit[-2:] == root and unit[:-2] == [t for i in kept for t in contexts[i]]


def test_too_long_units_drop_their_lowest_delta_i_contexts():
    contexts = [[1] * 4, [2] * 4, [3] * 4]
    unit, kept = make_unit([9] * 3, contexts, [0.9, 0.45, 0.7], order="sequence", max_length=11)
    assert kept == [0, 2] and len(unit) == 11
    _, kept = make_unit([9] * 3, contexts, [0.9, 0.45, 0.7], order="sequence", max_length=6)
    assert kept == []
    with pytest.raises(UnitTooLongError, match="root of 3 tokens"):
        make_unit([9] * 3, contexts, [0.9, 0.45, 0.7], max_length=2)
    with pytest.raises(ValueError, match="order must be"):
        make_unit([9], [], [], order="random")
    # Equal ΔI: the later context goes first; the root exactly at the limit keeps nothing.
    _, kept = make_unit([9] * 3, contexts, [0.5, 0.5, 0.5], order="sequence", max_length=11)
    assert kept == [0, 1]
    assert make_unit([9] * 3, contexts, [0.9, 0.45, 0.7], order="sequence", max_length=3) == ([9] * 3, [])


def random_units(n: int, seed: int = 0) -> datasets.Dataset:
    rng = random.Random(seed)
    rows = {"input_ids": [], "root_id": [], "context_ids": []}
    for i in range(n):
        rows["input_ids"].append([i + 1] * rng.randint(1, 40))  # token value identifies the unit
        rows["root_id"].append(f"root-{i}")
        rows["context_ids"].append([f"ctx-{i}-{j}" for j in range(rng.randint(0, 3))])
    return datasets.Dataset.from_dict(rows)


def test_packing_exact_lengths_intact_units_and_provenance():
    units = random_units(60)
    packed = pack_units(units, max_length=64, pad_token_id=0, seed=1)
    seen = []
    for row in packed:
        assert len(row["input_ids"]) == 64 and sum(row["seq_lengths"]) == 64
        padding = row["num_padding_tokens"]
        spans = row["seq_lengths"][:-1] if padding else row["seq_lengths"]
        offset = 0
        for span, root_id, context_ids in zip(spans, row["root_ids"], row["context_ids"], strict=True):
            piece = row["input_ids"][offset : offset + span]
            unit = int(root_id.split("-")[1])
            assert piece == units[unit]["input_ids"]  # the whole unit, uncut
            assert context_ids == units[unit]["context_ids"]
            seen.append(unit)
            offset += span
        assert row["input_ids"][offset:] == [0] * padding
    assert sorted(seen) == list(range(60))  # every unit exactly once
    total = sum(len(ids) for ids in units["input_ids"])
    assert len(packed) * 64 - sum(packed["num_padding_tokens"]) == total
    assert len(packed) <= total // 64 + 2  # best-fit-decreasing wastes little
    assert pack_units(units, 64, 0, seed=1)["input_ids"] == packed["input_ids"]  # reproducible
    assert pack_units(units, 64, 0, seed=2)["input_ids"] != packed["input_ids"]  # the seed shuffles the rows
    stats = packing_stats(packed)
    assert (stats.rows, stats.units, stats.unit_tokens) == (len(packed), 60, total)
    assert stats.tokens == 64 * len(packed) and stats.padding_tokens == sum(packed["num_padding_tokens"])


def test_small_packing_batches_keep_every_unit():
    units = random_units(60, seed=3).filter(lambda row: row["root_id"] != "root-7")  # an indices mapping
    packed = pack_units(units, max_length=48, pad_token_id=0, units_per_batch=7)
    assert sorted(r for row in packed["root_ids"] for r in row) == sorted(units["root_id"])
    assert all(sum(spans) == 48 for spans in packed["seq_lengths"])
    assert packing_stats(packed).unit_tokens == sum(len(ids) for ids in units["input_ids"])


def test_best_fit_fills_rows_exactly_when_it_can():
    lengths = [6, 4, 5, 5, 3, 7]  # fits 3 rows of 10 exactly: 6+4, 5+5, 3+7
    units = datasets.Dataset.from_dict(
        {
            "input_ids": [[i + 1] * n for i, n in enumerate(lengths)],
            "root_id": list("abcdef"),
            "context_ids": [[]] * 6,
        }
    )
    packed = pack_units(units, 10, pad_token_id=0)
    assert len(packed) == 3 and sum(packed["num_padding_tokens"]) == 0
    assert all(len(spans) == 2 for spans in packed["seq_lengths"])  # no padding span when the row is full


def test_packing_refuses_units_longer_than_the_row():
    units = datasets.Dataset.from_dict(
        {"input_ids": [[1] * 5, [2] * 9], "root_id": ["a", "b"], "context_ids": [[], []]}
    )
    with pytest.raises(ValueError, match="unit 1 has 9 tokens, more than max_length=8"):
        pack_units(units, 8, 0)
    with pytest.raises(ValueError, match="unit 0 has 0 tokens, empty"):
        pack_units(units.map(lambda row: {"input_ids": []}, features=units.features), 8, 0)
    with pytest.raises(ValueError, match=r"lack the column\(s\) \['root_id'\]"):
        pack_units(units.remove_columns("root_id"), 8, 0)


def test_packing_no_units_gives_an_empty_dataset_with_the_schema():
    units = datasets.Dataset.from_dict({"input_ids": [[1]], "root_id": ["a"], "context_ids": [["b"]]}).select(
        []
    )
    packed = pack_units(units, 8, 0)
    assert len(packed) == 0 and set(packed.column_names) == {
        "input_ids",
        "seq_lengths",
        "num_padding_tokens",
        "root_ids",
        "context_ids",
    }
    assert packing_stats(packed).rows == 0
