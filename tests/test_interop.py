"""Export to MDS, import from MDS, tokenized and text datasets, and re-tokenizing a build (`hf_entropylong/interop/`).

MDS files are written and read with mosaicml-streaming's own `MDSWriter` and `StreamingDataset`; the second
tokenizer is a byte-level BPE trained here on the crafted corpus (nothing downloaded). The build is the shared
reference build (`conftest.demo_build`).
"""

import json

import datasets
import numpy as np
import pytest
from builds import DOCS

from hf_entropylong import cli
from hf_entropylong.interop.importer import import_dataset
from hf_entropylong.interop.mds import MDS_COLUMNS, load_streaming
from hf_entropylong.interop.retokenize import retokenize
from hf_entropylong.models import encode_documents, load_tokenizer
from hf_entropylong.report import write_report


@pytest.fixture(scope="module")
def streaming():
    return load_streaming()


@pytest.fixture(scope="module")
def bpe_tokenizer(tmp_path_factory):
    """A byte-level BPE of 400 tokens trained on the crafted corpus, saved as a transformers tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([text for _, text in DOCS], trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    folder = tmp_path_factory.mktemp("bpe")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.save_pretrained(folder)
    return str(folder)


def packed_rows(folder):
    return datasets.load_dataset(str(folder), split="train")


def per_root(folder):
    return datasets.load_dataset(str(folder), "dependencies", split="train")


def unit_spans(row) -> list[list[int]]:
    """[start, end) of each unit of a packed row (the padding tail left out)."""
    ends = np.cumsum(row["seq_lengths"])
    spans = [[int(end - n), int(end)] for end, n in zip(ends, row["seq_lengths"], strict=True)]
    return spans[:-1] if row["num_padding_tokens"] else spans


def unit_starts(rows) -> dict:
    """Root id -> (its packed row, the start of its unit in the row)."""
    return {
        root: (row, start)
        for row in rows
        for root, (start, _) in zip(row["root_ids"], unit_spans(row), strict=True)
    }


def test_mds_round_trip_through_streaming(demo_build, streaming, tmp_path):
    folder, _ = demo_build
    out = tmp_path / "mds"
    cli.main(["export", str(folder), str(out), "--format", "mds"])
    streaming.base.util.clean_stale_shared_memory()
    samples = list(streaming.StreamingDataset(local=str(out), shuffle=False, batch_size=1))
    rows = packed_rows(folder)
    assert len(samples) == len(rows) > 0
    for sample, row in zip(samples, rows, strict=True):
        assert sample["input_ids"].dtype == np.uint32 and sample["input_ids"].tolist() == row["input_ids"]
        assert sample["indices"].dtype == np.uint32 and sample["indices"].shape == (len(row["root_ids"]), 2)
        assert sample["indices"].tolist() == unit_spans(row)  # one pair per unit, never the padding tail
        assert sample["length"] == len(row["input_ids"]) and sample["domain"] == "entropylong"
    index = json.loads((out / "index.json").read_text())
    encodings = dict(
        zip(index["shards"][0]["column_names"], index["shards"][0]["column_encodings"], strict=True)
    )
    assert encodings == MDS_COLUMNS  # the encodings ProLong's packing tool writes
    assert "--tokenized_mds_train" in (out / "README.md").read_text()

    back = tmp_path / "back"
    cli.main(["import", str(out), str(back), "--tokenizer", "embedded:SmolLM2-135M-Instruct"])
    again = packed_rows(back)
    for name in ("input_ids", "seq_lengths", "num_padding_tokens", "text"):
        assert again[name] == rows[name], name


def write_mds(streaming, folder, samples, columns=MDS_COLUMNS):
    with streaming.MDSWriter(out=str(folder), columns=columns) as writer:
        for sample in samples:
            writer.write(sample)


def test_import_keeps_rows_and_report_runs(streaming, tmp_path):
    rows = [np.arange(16, dtype=np.uint32) + 100 * i for i in range(3)]
    pairs = [[[0, 5], [5, 12]], [[0, 16]], [[0, 4], [6, 16]]]  # a tail outside every pair; a gap between two
    write_mds(streaming, tmp_path / "mds", [
        {"input_ids": ids, "indices": np.array(p, dtype=np.uint32), "length": 16, "domain": "."}
        for ids, p in zip(rows, pairs, strict=True)
    ])  # fmt: skip
    counts = import_dataset(str(tmp_path / "mds"), tmp_path / "imported")
    imported = packed_rows(tmp_path / "imported")
    assert imported["input_ids"] == [ids.tolist() for ids in rows]
    assert imported["seq_lengths"] == [[5, 7, 4], [16], [4, 2, 10]]
    assert imported["num_padding_tokens"] == [4, 0, 0]
    assert imported["root_ids"] == [["0.0", "0.1"], ["1.0"], ["2.0", "2.1", "2.2"]]
    stats = json.loads((tmp_path / "imported" / "stats.json").read_text())
    assert stats["interop"]["tokens_outside_indices"] == 2
    assert (counts.units, counts.sequences, counts.padding_tokens) == (6, 3, 4)
    assert per_root(tmp_path / "imported")["num_unit_tokens"] == [5, 7, 16, 4, 2, 10]

    index = write_report([tmp_path / "imported"], tmp_path / "report", limit=10)
    page = index.read_text()
    assert "imported" in page and '"id": "2.2"' in page


def test_import_packs_documents_and_texts(streaming, bpe_tokenizer, tmp_path):
    lengths = [30, 7, 12, 40, 25]  # ProLong's unpacked layout: one document per sample, no indices
    columns = {"input_ids": "ndarray:uint32", "length": "int"}
    documents = [np.arange(3, 3 + n, dtype=np.uint32) for n in lengths]
    write_mds(
        streaming, tmp_path / "raw", [{"input_ids": ids, "length": len(ids)} for ids in documents], columns
    )
    with pytest.raises(ValueError, match="max_seq_length"):  # rows of different lengths are not packed rows
        import_dataset(str(tmp_path / "raw"), tmp_path / "kept")
    assert not (tmp_path / "kept").exists() and not (tmp_path / ".kept.partial").exists()
    counts = import_dataset(str(tmp_path / "raw"), tmp_path / "packed", bpe_tokenizer, max_seq_length=32)
    rows = packed_rows(tmp_path / "packed")
    assert all(len(ids) == 32 for ids in rows["input_ids"])
    units = sorted(n for row in rows for n in row["seq_lengths"][: len(row["root_ids"])])
    assert units == [7, 12, 25, 30]  # whole documents, the one of 40 tokens left out
    assert per_root(tmp_path / "packed")["status"].count("too_long") == 1 and counts.units == 4

    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in DOCS))
    import_dataset(str(docs), tmp_path / "texts", bpe_tokenizer, max_seq_length=400)
    table = per_root(tmp_path / "texts")
    assert dict(zip(table["root_id"], table["root_text"], strict=True)) == dict(DOCS)
    assert table["status"] == [
        "too_long" if i == "long" else "ok" for i, _ in DOCS
    ]  # ~1,900 tokens of this BPE


def test_retokenized_build_keeps_every_dependency(demo_build, bpe_tokenizer, tmp_path):
    folder, _ = demo_build
    new = load_tokenizer(bpe_tokenizer)
    old = load_tokenizer("embedded:SmolLM2-135M-Instruct")
    counts, own = retokenize(folder, tmp_path / "bpe", bpe_tokenizer, max_seq_length=512)
    source, table = per_root(folder), per_root(tmp_path / "bpe")
    rows = packed_rows(tmp_path / "bpe")
    assert own["dependencies_placed_after"] == own["dependencies_placed_before"] > 0
    assert all(len(ids) == 512 for ids in rows["input_ids"])
    where, old_units = unit_starts(rows), unit_starts(packed_rows(folder))
    for before, after in zip(source, table, strict=True):
        assert (
            after["root_id"] == before["root_id"] and after["unit_context_ids"] == before["unit_context_ids"]
        )
        encoded = encode_documents(new, [after["root_text"]])
        ids, offsets = encoded.ids[0], encoded.offsets[0]
        for position, was in zip(after["positions"], before["positions"], strict=True):
            assert (position["char_start"], position["char_end"]) == (was["char_start"], was["char_end"])
            first = position["char_start"] + len(position["token"]) - len(position["token"].lstrip())
            start, end = offsets[position["token_index"]]
            assert start <= first < end, (after["root_id"], position)  # the same characters, new token
        if after["status"] != "ok":
            continue
        row, start = where[after["root_id"]]
        root_at = start + sum(after["unit_context_lengths"])
        assert row["input_ids"][root_at : root_at + len(ids)] == ids
        for position in after["positions"]:
            assert row["input_ids"][root_at + position["token_index"]] == ids[position["token_index"]]
        old_row, old_start = old_units[after["root_id"]]
        unit = row["input_ids"][start : root_at + len(ids)]
        old_unit = old_row["input_ids"][old_start : old_start + before["num_unit_tokens"]]
        assert new.decode(unit, skip_special_tokens=True) == old.decode(old_unit, skip_special_tokens=True)
        assert len(after["dependency_distances"]) == len(before["dependency_distances"])
    card = (tmp_path / "bpe" / "README.md").read_text()
    assert "## Before and after" in card and "| tokens | 1,024 | 512 |" in card

    counts, own = retokenize(folder, tmp_path / "short", bpe_tokenizer, max_seq_length=200, min_row_fill=0.0)
    trimmed = [row for row in per_root(tmp_path / "short") if row["status"] == "ok"]
    kept = [max(row["contexts"], key=lambda c: c["delta_i"])["corpus_id"] for row in trimmed]
    assert own["contexts_trimmed_for_length"] == 1 and [row["unit_context_ids"] for row in trimmed] == [kept]
    assert own["dependencies_placed_after"] == own["dependencies_placed_before"] - 1


def test_outputs_never_overwrite(demo_build, tmp_path, capsys):
    folder, _ = demo_build
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    for command in (["export", str(folder), str(taken)], ["retokenize", str(folder), str(taken), "--tokenizer",
                    "embedded:SmolLM2-135M-Instruct", "--max_seq_length", "64"]):  # fmt: skip
        with pytest.raises(SystemExit) as stopped:
            cli.main(command)
        assert stopped.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and f"{taken} is not empty" in error[0]
    assert [p.name for p in tmp_path.iterdir()] == ["taken"] and (taken / "notes.txt").read_text() == "mine"
