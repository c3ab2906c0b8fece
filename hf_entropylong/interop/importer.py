"""`hf-entropylong import SRC OUT`: another dataset into this package's published layout.

    hf-entropylong import prolong-data-64K/books outputs/books --tokenizer meta-llama/Meta-Llama-3-8B
    hf-entropylong import released.parquet outputs/released --max_seq_length 131072 --tokenizer NAME
    hf-entropylong import wiki.jsonl outputs/wiki --tokenizer NAME --max_seq_length 8192   # text

What SRC can be, and what becomes a document (one attention span, one row of the `dependencies` table):

- an MDS folder (`index.json` in it, or in folders under it, as ProLong's per-domain releases are laid out),
  such as `hf-entropylong export` writes and the EntropyLong, ProLong and NExtLong releases ship: each sample's
  `input_ids`, cut at its `indices` pairs ([start, end), the authors' trainer's document boundaries);
- a Hugging Face dataset (Hub id, local files or folder, a published folder of this package) with `input_ids` and
  either `seq_lengths` (this package's and TRL's packed rows, with `num_padding_tokens`) or `indices`: the same;
  a row with neither is one document;
- a text dataset (a `--text_column`, default `text`): each text encoded as a build encodes a document
  (`models.encode_documents`: BOS when the tokenizer adds one, EOS at the end).

Rows. Without `--max_seq_length`, a tokenized source's rows are kept as they are (they must all have one length):
each pair is a span, tokens after the last pair become the padding tail (the authors' trainer leaves them out;
this one gives them no loss), and tokens before or between pairs become spans of their own, counted on the card.
With `--max_seq_length N` (and always for text), the documents are packed into rows of exactly N tokens as a build
packs its units (`publish.packing`: best-fit-decreasing, never split, padding at the end, rows under
`--min_row_fill` held back); a document longer than N is left out with the status `too_long`.

The per-document rows carry no dependency information (no positions, candidates or contexts), so the report's
viewer shows each document's text, and its headline and distributions the units and tokens. `--tokenizer` is
needed to pack (its pad token, else EOS) and to decode `text` and `root_text`; without it a kept-rows import has
empty texts.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np

from ..models import encode_documents, load_tokenizer
from ..publish.counts import BuildCounts
from ..publish.packing import PackSettings, pack_sequences
from ..sources import SourceCounts, load_text_source
from ..train.spans import validate_packed_dataset
from .folders import DEPENDENCY_FEATURES, empty_dependencies, load_packed, staged_folder, write_published
from .mds import mds_folders, read_mds

STATUSES = ("ok", "too_long")
PACKED_FEATURES = datasets.Features(
    {
        "input_ids": datasets.List(datasets.Value("int64")),
        "seq_lengths": datasets.List(datasets.Value("int32")),
        "num_padding_tokens": datasets.Value("int32"),
        "root_ids": datasets.List(datasets.Value("string")),
        "context_ids": datasets.List(datasets.List(datasets.Value("string"))),
    }
)


def row_spans(length: int, pairs, where: str) -> tuple[list[int], int, int]:
    """A row's consecutive spans from its [start, end) document pairs: (seq_lengths, padding tail, tokens before or
    between pairs). No pairs: the whole row is one document."""
    pairs = sorted((int(start), int(end)) for start, end in np.asarray(pairs).reshape(-1, 2))
    if not pairs:
        return [length], 0, 0
    spans, at, outside = [], 0, 0
    for start, end in pairs:
        if start < at or not 0 <= start < end <= length:
            raise ValueError(
                f"{where}: indices pair [{start}, {end}) overlaps another or lies outside its {length} tokens."
            )
        if start > at:
            spans.append(start - at)
            outside += start - at
        spans.append(end - start)
        at = end
    return spans + ([length - at] if length > at else []), length - at, outside


def tokenized_rows(source: str, split: str, counts: dict) -> Iterator[dict]:
    """The rows of a tokenized source in the packed schema (documents named `<row>.<span>`), counting into `counts`."""
    path = Path(source)
    if path.is_dir() and mds_folders(path):
        samples = read_mds(path)
    else:
        dataset = load_packed(source, split)
        if "input_ids" not in dataset.column_names:
            raise ValueError(f"{source}: no input_ids column (columns: {', '.join(dataset.column_names)}).")
        samples = enumerate(dataset)
    for number, sample in samples:
        ids = np.asarray(sample["input_ids"], dtype=np.int64)
        where = f"{source}, row {number}"
        if sample.get("seq_lengths") is not None:
            spans, padding, outside = (
                list(map(int, sample["seq_lengths"])),
                int(sample.get("num_padding_tokens", 0)),
                0,
            )
            if sum(spans) != len(ids) or min(spans, default=1) <= 0:
                raise ValueError(
                    f"{where}: seq_lengths must be positive and sum to its {len(ids)} input_ids."
                )
        else:
            spans, padding, outside = row_spans(len(ids), sample.get("indices", []), where)
        counts["tokens_outside_indices"] += outside
        units = len(spans) - (1 if padding else 0)
        yield {
            "input_ids": ids,
            "seq_lengths": spans,
            "num_padding_tokens": padding,
            "root_ids": [f"{number}.{k}" for k in range(units)],
            "context_ids": [[] for _ in range(units)],
        }


def documents_of(packed: datasets.Dataset) -> datasets.Dataset:
    """One row per unit of `packed` (`id`, `unit_input_ids`, `unit_context_ids`), the padding tails left out."""

    def split_rows(batch: dict) -> dict:
        out = {"id": [], "unit_input_ids": [], "unit_context_ids": []}
        for ids, spans, ids_of_units in zip(
            batch["input_ids"], batch["seq_lengths"], batch["root_ids"], strict=True
        ):
            ends = np.cumsum(spans)
            for unit, end, length in zip(
                ids_of_units, ends, spans, strict=False
            ):  # the padding tail has no id
                out["id"].append(unit)
                out["unit_input_ids"].append(ids[end - length : end])
                out["unit_context_ids"].append([])
        return out

    return packed.map(
        split_rows, batched=True, batch_size=64, remove_columns=packed.column_names, desc="Documents"
    )


def dependencies_of(documents: datasets.Dataset, max_length: int | None, tokenizer) -> datasets.Dataset:
    """The per-document table: each document's id, decoded text (empty without a tokenizer) and length."""

    def rows(batch: dict) -> dict:
        lengths = [len(ids) for ids in batch["unit_input_ids"]]
        texts = (
            tokenizer.batch_decode(batch["unit_input_ids"], skip_special_tokens=True)
            if tokenizer
            else [""] * len(lengths)
        )
        statuses = ["too_long" if max_length and n > max_length else "ok" for n in lengths]
        out = empty_dependencies(batch["id"], texts, lengths, "ok")
        out["status"] = statuses
        return out

    return documents.map(
        rows,
        batched=True,
        remove_columns=documents.column_names,
        features=DEPENDENCY_FEATURES,
        desc="Per-document rows",
    )


def import_dataset(
    source: str,
    out: Path,
    tokenizer_name: str | None = None,
    max_seq_length: int | None = None,
    text_column: str = "text",
    id_column: str = "id",
    split: str = "train",
    min_row_fill: float = 0.0,
    seed: int = 0,
) -> BuildCounts:
    """Import `source` into the published folder `out` (see the module docstring); return its counts."""
    tokenizer = load_tokenizer(tokenizer_name) if tokenizer_name else None
    if max_seq_length is not None and tokenizer is None:
        raise ValueError(
            "--max_seq_length packs documents into rows: give --tokenizer too (its pad token fills rows)."
        )
    counts = {"tokens_outside_indices": 0, "documents_too_long": 0}
    with staged_folder(out) as staging:
        work = staging / ".work"  # the generated tables' Arrow files, removed before the folder is renamed
        is_mds = Path(source).is_dir() and bool(mds_folders(Path(source)))
        is_text = not is_mds and "input_ids" not in load_packed(source, split).column_names
        if is_text:
            if tokenizer is None or max_seq_length is None:
                raise ValueError(
                    f"{source} is a text dataset: give --tokenizer and --max_seq_length to tokenize and pack it."
                )
            texts, _ = load_text_source(source, split, text_column, id_column, role="source")
            documents = texts.map(
                lambda batch: {"unit_input_ids": encode_documents(tokenizer, batch["text"]).ids, "unit_context_ids": [[] for _ in batch["id"]]},
                batched=True, remove_columns=["text"], desc="Tokenizing",
            )  # fmt: skip
        else:
            rows = datasets.Dataset.from_generator(
                tokenized_rows, gen_kwargs={"source": source, "split": split, "counts": counts},
                features=PACKED_FEATURES, cache_dir=str(work),
            )  # fmt: skip
            documents = documents_of(rows)
        dependencies = dependencies_of(documents, max_seq_length, tokenizer)
        if max_seq_length is None:
            packed = _kept_rows(rows, source, tokenizer)
            left_over = 0
        else:
            fitting = documents.filter(
                lambda batch: [len(ids) <= max_seq_length for ids in batch["unit_input_ids"]], batched=True
            )
            counts["documents_too_long"] = len(documents) - len(fitting)
            settings = PackSettings(max_seq_length=max_seq_length, min_row_fill=min_row_fill)
            packed, left_over = pack_sequences(fitting, settings, tokenizer, seed)
            if packed is None:
                raise ValueError(
                    f"{source}: no row of {max_seq_length} tokens could be packed ({len(documents)} documents, {counts['documents_too_long']} too long)."
                )
        root_counts = SourceCounts(rows=len(documents), kept=len(documents), empty=0, identity=source)
        build_counts = BuildCounts.from_tables(
            "imported", STATUSES, root_counts, [], dependencies, packed, left_over
        )
        settings = {"method": "imported", "source": source, "split": split, "tokenizer": tokenizer_name,
                    "max_seq_length": max_seq_length or len(packed[0]["input_ids"]), "min_row_fill": min_row_fill,
                    "seed": seed, "text_column": text_column if is_text else None}  # fmt: skip
        kind = "text" if is_text else "tokenized"
        card = {
            "title": f"Import of {Path(source).name or source}",
            "what": f"The {kind} dataset `{source}` imported by `hf-entropylong import`: "
            + ("its rows kept as they are, one attention span per document." if max_seq_length is None
               else f"its documents packed into rows of {max_seq_length:,} tokens, one attention span each."),
            "rows": [("documents", f"{len(documents):,}"), ("documents longer than a row, left out", f"{counts['documents_too_long']:,}"),
                     ("tokens outside every indices pair (kept as spans of their own)", f"{counts['tokens_outside_indices']:,}")],
            "tokenizer": tokenizer_name,
            "license": None,
        }  # fmt: skip
        write_published(staging, packed, dependencies, build_counts, counts, settings, card)
        shutil.rmtree(work, ignore_errors=True)
    return build_counts


def _kept_rows(rows: datasets.Dataset, source: str, tokenizer) -> datasets.Dataset:
    """The source's rows as they are, checked to share one length, with their decoded `text`."""
    try:
        validate_packed_dataset(rows, source)
    except ValueError as error:
        raise ValueError(
            f"{error} Give --max_seq_length N and --tokenizer to pack the documents into rows of N tokens."
        ) from None
    return rows.map(
        lambda batch: {"text": tokenizer.batch_decode(batch["input_ids"]) if tokenizer else [""] * len(batch["input_ids"])},
        batched=True, desc="Decoding rows",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> BuildCounts:
    parser = argparse.ArgumentParser(
        prog="hf-entropylong import",
        description="Import a tokenized MDS or Hugging Face dataset with document boundaries, or a text dataset, "
        "into this package's published layout (for report, export and training).",
    )
    parser.add_argument(
        "source", metavar="SRC", help="MDS folder, dataset (Hub id, files, folder) or text dataset."
    )
    parser.add_argument("out", metavar="OUT", help="A new or empty folder.")
    parser.add_argument(
        "--tokenizer", help="Tokenizer of the ids (decodes the texts; needed to pack or tokenize)."
    )
    parser.add_argument(
        "--max_seq_length",
        type=int,
        help="Pack the documents into rows of this many tokens (default: keep the rows).",
    )
    parser.add_argument("--text_column", default="text", help="Text column of a text dataset (default text).")
    parser.add_argument(
        "--id_column", default="id", help="Document id column of a text dataset (default id)."
    )
    parser.add_argument("--split", default="train", help="Split of a dataset source (default train).")
    parser.add_argument(
        "--min_row_fill",
        type=float,
        default=0.0,
        help="When packing: hold back rows filled less than this share.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the packed rows' shuffle.")
    args = parser.parse_args(argv)
    counts = import_dataset(
        args.source, Path(args.out), args.tokenizer, args.max_seq_length, args.text_column, args.id_column,
        args.split, args.min_row_fill, args.seed,
    )  # fmt: skip
    print(
        f"Imported {counts.roots:,} documents into {counts.sequences:,} rows ({counts.units:,} units, "
        f"{counts.tokens:,} tokens, {counts.padding_tokens:,} padding) in {args.out}.",
        file=sys.stderr,
    )
    return counts


if __name__ == "__main__":
    from hf_entropylong import cli

    cli.run(main)
