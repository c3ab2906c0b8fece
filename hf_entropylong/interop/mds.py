"""`hf-entropylong export SRC OUT --format mds`: packed rows as MDS shards the EntropyLong authors' trainer reads.

    hf-entropylong export outputs/demo outputs/demo-mds --format mds

The authors' release (caskcsg/longcontext, `EntropyLong/prolong/training/dataset.py`, derived from ProLong) trains on
mosaicml-streaming MDS folders named by `--tokenized_mds_train`. Its collator reads two fields of a sample:
`input_ids` and `indices`, a sequence of (start, end) token pairs, end exclusive. Each pair becomes a sequence of
its own (flash-attn varlen, the pair's first token without a label) and tokens outside every pair are left out of
the batch. ProLong's packing tool (datatools, `scripts/pack.py`) writes those rows with the column encodings
`input_ids: ndarray:uint32`, `indices: ndarray:uint32` (shape [pairs, 2]), `length: int` and `domain: str`.
Export writes the same columns with streaming's own `MDSWriter`, one sample per packed row, in the dataset's order:

- `input_ids`: the row's tokens, the padding tail included (uint32; a larger id is refused);
- `indices`: one [start, end) pair per unit (`seq_lengths`), so each EntropyLong unit is one attention span there as
  here. The padding tail is not a pair: the authors' trainer leaves it out of the batch (this package's collator
  keeps it and gives it no loss);
- `length`: the row's tokens; `domain`: the dataset's method (`entropylong`, a baseline's name, `imported`).

Where it differs from the authors' own data: their rows are full (datatools cuts the last document), so their pairs
cover every token; ours leave out the padding tail. Their collator skips a pair of one token (nothing to predict);
no unit is that short. Their trainer pads each batch to a multiple of `--seq_parallel_size` itself. A note in the
output folder (`README.md`, which streaming ignores) gives the trainer's flags.

`read_mds` reads MDS folders (this export, ProLong's and NExtLong's releases) through streaming's `LocalDataset`,
for `hf-entropylong import`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..files import write_text
from ..models import is_embedded
from ..publish.plots import read_yaml
from ..train.spans import validate_packed_dataset
from .folders import is_published, load_packed, staged_folder

MDS_COLUMNS = {"input_ids": "ndarray:uint32", "indices": "ndarray:uint32", "length": "int", "domain": "str"}
STREAMING_VERSION = "0.13.0"
INSTALL = (
    f"pip install --no-deps mosaicml-streaming=={STREAMING_VERSION} && pip install 'hf_entropylong[mds]'"
)


def load_streaming() -> types.ModuleType:
    """mosaicml-streaming, imported for its MDS writer and readers.

    `import streaming` also imports its image datasets (`streaming.vision`), which need torchvision built for the
    installed torch; none of that is used here. When torchvision is not installed, that subpackage is replaced by
    an empty module before the import, so the MDS classes load without it.
    """
    if importlib.util.find_spec("streaming") is None:
        raise ImportError(f"mosaicml-streaming is not installed: {INSTALL}")
    if "streaming" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        sys.modules["streaming.vision"] = types.ModuleType(
            "streaming.vision", "Not loaded: streaming's image datasets need torchvision."
        )
    return importlib.import_module("streaming")


def unit_indices(seq_lengths: list[int], num_padding_tokens: int) -> np.ndarray:
    """The [start, end) token pairs of a row's units: its `seq_lengths`, without the padding tail."""
    spans = list(seq_lengths[:-1] if num_padding_tokens else seq_lengths)
    ends = np.cumsum(spans, dtype=np.int64)
    return np.stack([ends - spans, ends], axis=1).astype(np.uint32).reshape(-1, 2)


TRAINER_NOTE = """# MDS export of {source}

Written by `hf-entropylong export` with mosaicml-streaming's `MDSWriter`: {rows:,} samples of {length:,} tokens
({units:,} units, {padding:,} padding tokens), columns {columns}.

- `input_ids`: the packed row, token ids of the tokenizer `{tokenizer}`.
- `indices`: one [start, end) pair per unit, the unit's attention span; the padding tail at the end of a row is in
  no pair, so the trainer below leaves it out.

Train on it with the EntropyLong authors' trainer (caskcsg/longcontext, `EntropyLong/train_128k.sh`, ProLong-derived):

    --tokenized_mds_train {out}          # or, as their script builds it: $DATASET/{name}@1.0
    --tokenizer_name {tokenizer}
    --per_device_max_tokens {length}
    --seq_parallel_size 2 --config_overrides "rope_theta=200000000"   # their 128K run
{where}
Read it in Python with `streaming.StreamingDataset(local="{out}")`, or bring it back with
`hf-entropylong import {out} OUT`.
"""


def export_mds(source: str, out: Path, split: str = "train") -> dict:
    """Write the packed rows of `source` into the MDS folder `out` (see the module docstring); return the counts.

    Args:
        source: a published folder (a build, import or re-tokenizing) or any dataset of packed rows (`input_ids`,
            `seq_lengths`, `num_padding_tokens`).
        out: a new or empty folder.
        split: the split of a dataset source.
    """
    streaming = load_streaming()
    packed = load_packed(source, split)
    length = validate_packed_dataset(packed, source)
    stats, config = {}, {}
    if is_published(Path(source)):
        stats = json.loads((Path(source) / "stats.json").read_text())
        config = read_yaml(Path(source) / "build_config.yaml")
    counts = {"rows": 0, "units": 0, "padding": 0, "length": length}
    domain = str(stats.get("method") or config.get("method") or "")
    with staged_folder(out) as staging:
        with streaming.MDSWriter(out=str(staging / "mds"), columns=MDS_COLUMNS) as writer:
            columns = ["input_ids", "seq_lengths", "num_padding_tokens"]
            rows = packed.select_columns(columns).with_format("numpy")
            for batch in tqdm(
                rows.iter(batch_size=64), total=-(-len(rows) // 64), desc="Writing MDS", unit="batch"
            ):
                for ids, spans, padding in zip(*(batch[c] for c in columns), strict=True):
                    if ids.size and int(ids.max()) > np.iinfo(np.uint32).max:
                        raise ValueError(
                            f"{source}: token id {int(ids.max())} does not fit MDS's uint32 input_ids."
                        )
                    indices = unit_indices([int(n) for n in spans], int(padding))
                    writer.write(
                        {
                            "input_ids": ids.astype(np.uint32),
                            "indices": indices,
                            "length": len(ids),
                            "domain": domain,
                        }
                    )
                    counts["rows"] += 1
                    counts["units"] += len(indices)
                    counts["padding"] += int(padding)
        for path in (staging / "mds").iterdir():  # the shards beside the note, the folder the trainer reads
            path.rename(staging / path.name)
        (staging / "mds").rmdir()
        tokenizer = config.get("tokenizer") or config.get("lm") or "of the source"
        where = (  # a name only this package resolves: the trainer needs the tokenizer's folder
            f'\n`{tokenizer}` is a model shipped in a Python package: `hf_entropylong.models.resolve_model("{tokenizer}")` '
            "gives its local folder.\n"
            if is_embedded(tokenizer)
            else ""
        )
        note = TRAINER_NOTE.format(
            source=source, columns=", ".join(f"`{k}: {v}`" for k, v in MDS_COLUMNS.items()), out=out,
            name=Path(out).name, tokenizer=tokenizer, where=where, **counts,
        )  # fmt: skip
        write_text(staging / "README.md", note)
    return counts


def mds_folders(source: Path) -> list[Path]:
    """The MDS folders of `source`: itself when it has an `index.json`, else every folder under it that has one."""
    if (source / "index.json").is_file():
        return [source]
    return sorted(path.parent for path in source.rglob("index.json"))


def read_mds(source: Path) -> Iterator[tuple[int, dict]]:
    """(sample number, sample) of every sample in the MDS folders of `source`, in order, via streaming's reader."""
    streaming = load_streaming()
    folders = mds_folders(source)
    if not folders:
        raise FileNotFoundError(f"{source}: no index.json in it or under it; give an MDS folder.")
    number = 0
    for folder in folders:
        index = json.loads((folder / "index.json").read_text())
        for shard in index["shards"]:
            raw = shard.get("raw_data") or {}
            if not (folder / raw.get("basename", "")).is_file():
                compressed = (shard.get("zip_data") or {}).get("basename")
                hint = (
                    f" (only its compressed {compressed} is there: decompress it first)" if compressed else ""
                )
                raise FileNotFoundError(
                    f"{source}: shard {folder / raw.get('basename', '?')} is missing{hint}."
                )
        dataset = streaming.LocalDataset(str(folder))
        for i in range(len(dataset)):
            yield number, dataset[i]
            number += 1


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="hf-entropylong export",
        description="Write a published dataset's packed rows in another trainer's format (MDS: input_ids and "
        "indices, as the EntropyLong authors' ProLong-derived trainer reads them).",
    )
    parser.add_argument("source", metavar="SRC", help="A published folder, or a dataset of packed rows.")
    parser.add_argument("out", metavar="OUT", help="A new or empty folder.")
    parser.add_argument("--format", choices=["mds"], default="mds", help="Output format (default mds).")
    parser.add_argument("--split", default="train", help="Split of a dataset source (default train).")
    args = parser.parse_args(argv)
    counts = export_mds(args.source, Path(args.out), args.split)
    print(
        f"Wrote {counts['rows']:,} MDS samples of {counts['length']:,} tokens ({counts['units']:,} units, "
        f"{counts['padding']:,} padding tokens) to {args.out}; its README.md gives the trainer's flags.",
        file=sys.stderr,
    )
    return counts


if __name__ == "__main__":
    from hf_entropylong import cli

    cli.run(main)
