"""Fixtures of the training tests: a small packed dataset (the schema of DESIGN.md) and a tiny CPT run.

The packed rows are made here, not by the builder: units of 1-3 Wikipedia summaries (each `tokenizer(text)`
followed by EOS), packed in order into rows of exactly `MAX_SEQ_LENGTH` tokens, the remainder padded as the last
span.
"""

import json
import socket
from pathlib import Path

import pytest
from datasets import Dataset

from hf_entropylong.models import EMBEDDED_LM, embedded_corpus_file, load_tokenizer

REPO = Path(__file__).resolve().parents[2]
MAX_SEQ_LENGTH = 256
TINY_STEPS = 8


def pack_units(units: list[list[int]], max_seq_length: int, pad_id: int) -> list[dict]:
    """Pack token lists into rows of the packed schema, first fit in order; longer units are dropped."""
    rows, current = [], []
    for unit in units:
        if len(unit) > max_seq_length:
            continue
        if sum(map(len, current)) + len(unit) > max_seq_length:
            rows.append(current)
            current = []
        current.append(unit)
    rows.append(current)
    packed = []
    for i, row in enumerate(rows):
        ids = [t for unit in row for t in unit]
        pad = max_seq_length - len(ids)
        packed.append(
            {
                "input_ids": ids + [pad_id] * pad,
                "seq_lengths": [len(u) for u in row] + ([pad] if pad else []),
                "num_padding_tokens": pad,
                "text": "",
                "root_ids": [f"root-{i}-{j}" for j in range(len(row))],
                "context_ids": [[] for _ in row],
            }
        )
    return packed


def free_port() -> str:
    """A TCP port nobody listens on now, for a launcher's rendezvous (the default 29500 may be taken)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer(EMBEDDED_LM)


@pytest.fixture(scope="session")
def packed_dir(tmp_path_factory, tokenizer) -> Path:
    """A folder with `train.parquet` of ~30 packed rows of 256 tokens; `load_dataset(folder)` reads it."""
    docs = [json.loads(line)["text"] for line in embedded_corpus_file().open()][:150]
    docs = [tokenizer(d)["input_ids"][:100] + [tokenizer.eos_token_id] for d in docs]
    units = [sum(docs[i : i + 1 + i % 3], []) for i in range(0, len(docs), 2)]
    rows = pack_units(units, MAX_SEQ_LENGTH, tokenizer.pad_token_id)
    folder = tmp_path_factory.mktemp("packed")
    Dataset.from_list(rows).to_parquet(str(folder / "train.parquet"))
    return folder


def tiny_cpt_args(packed: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--config",
        str(REPO / "recipes/tiny/cpt.yaml"),
        "--dataset_name",
        str(packed),
        "--output_dir",
        str(output_dir),
        "--max_steps",
        str(TINY_STEPS),
        "--save_steps",
        str(TINY_STEPS // 2),
        "--logging_steps",
        "1",
        "--activation_checkpointing",
        "false",
        *extra,
    ]


@pytest.fixture(scope="session")
def tiny_cpt_dir(tmp_path_factory, packed_dir) -> Path:
    """Output folder of a tiny CPT run on the packed fixture (weights, checkpoints, card)."""
    from hf_entropylong.train import cpt

    output_dir = tmp_path_factory.mktemp("tiny-cpt")
    cpt.main(tiny_cpt_args(packed_dir, output_dir))
    return output_dir
