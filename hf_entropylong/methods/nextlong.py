"""The NExtLong baseline (negative document extension, Gao et al. 2025): negatives → interleave.

Negative document extension (NExtLong, Gao et al. 2025): the root is
split into meta-chunks; each chunk is followed by `negatives_per_chunk` hard negatives, the corpus documents
nearest to it, so the model must reach back past look-alike distractors to continue the document. Reproduced:
chunking at line breaks into chunks of at most `meta_chunk_chars` characters (the released chunking; a longer
line is cut at sentence ends, then at words), negatives by dense search with the chunk as query in the builder's
FAISS index, interleaving chunk, negatives, chunk, … Simplified: the released pipeline indexes chunks of the
corpus, this one its whole documents (the builder's one index); the number of negatives is fixed per chunk
rather than set by a target length (units are packed to the length instead).
Negatives are never the root itself or a near-copy of it (`index.exclusion`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..index.exclusion import EligibleSearchSettings, search_eligible
from ..models import encode_documents
from ..settings import require_positive, setting
from ..stages import Stage
from ..stages.units import UNIT_COLUMNS, add_unit
from .common import (
    FIRST_COLUMNS,
    FIRST_DROP_REASONS,
    POSITION,
    NoSettings,
    complete,
    finish_row,
    start_first_stage,
)


@dataclass
class NExtLongSettings:
    """The nextlong baseline."""

    meta_chunk_chars: int = setting(2048, help="nextlong: characters per meta-chunk, at most.")
    negatives_per_chunk: int = setting(2, help="nextlong: hard negatives placed after each meta-chunk.")

    def __post_init__(self):
        require_positive(self, "meta_chunk_chars", "negatives_per_chunk")


@dataclass
class NegativeSearchSettings(NExtLongSettings, EligibleSearchSettings):
    """What the negatives stage reads: the nextlong settings and how to search (prompt, nprobe, threshold)."""

    def __post_init__(self):
        NExtLongSettings.__post_init__(self)
        EligibleSearchSettings.__post_init__(self)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def meta_chunks(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Character spans of the meta-chunks of `text`: lines grouped up to `max_chars` characters each.

    A line longer than `max_chars` is cut at sentence ends, and a sentence longer than that at word starts.
    """
    pieces = []  # (start, end) spans no longer than max_chars, in order
    for line in re.finditer(r"[^\n]+", text):
        cuts = [line.start()] + [line.start() + m.end() for m in _SENTENCE_END.finditer(line.group())]
        for start, end in zip(cuts, [*cuts[1:], line.end()], strict=True):
            while end - start > max_chars:
                cut = text.rfind(" ", start + 1, start + max_chars + 1)
                cut = cut if cut > start else start + max_chars
                pieces.append((start, cut))
                start = cut
            pieces.append((start, end))
    chunks: list[tuple[int, int]] = []
    for start, end in pieces:
        if chunks and end - chunks[-1][0] <= max_chars:
            chunks[-1] = (chunks[-1][0], end)
        else:
            chunks.append((start, end))
    return chunks


def _chunk_token_starts(offsets: list[tuple[int, int]], chunks: list[tuple[int, int]]) -> list[int]:
    """The root token index where each chunk starts (the first chunk at 0: BOS included)."""
    starts = [0]
    for start, _ in chunks[1:]:
        starts.append(next(t for t, (s, e) in enumerate(offsets) if e > start and s < e))
    return starts


def hard_negatives(batch: dict, settings: NegativeSearchSettings, inputs) -> dict:
    """The negatives stage: the root's meta-chunks, each with its nearest corpus documents (not the root's)."""
    out, fits, offsets = start_first_stage(batch, inputs)
    texts = batch["text"]
    chunks = [
        meta_chunks(text, settings.meta_chunk_chars) if ok else []
        for text, ok in zip(texts, fits, strict=True)
    ]
    found = search_eligible(
        inputs,
        list(zip(batch["id"], texts, strict=True)),
        [[text[start:end] for start, end in spans] for text, spans in zip(texts, chunks, strict=True)],
        settings.negatives_per_chunk,
        settings,
        distinct=True,
    )
    for row, (text, spans, (per_chunk, excluded)) in enumerate(zip(texts, chunks, found, strict=True)):
        positions, documents = [], []
        token_starts = _chunk_token_starts(offsets[row], spans) if spans else []
        for (start, end), token, kept in zip(spans, token_starts, per_chunk, strict=True):
            positions.append(
                complete({"token_index": token, "char_start": start, "char_end": end, "token": "",
                          "query": text[start:end]}, POSITION)
            )  # fmt: skip
            documents += [(hit, corpus_id, score, [token]) for hit, corpus_id, score in kept]
        finish_row(out, row, positions, documents, excluded)
    return out


NEGATIVES_STAGE = Stage(
    name="negatives",
    settings=NegativeSearchSettings,
    inputs=("tokenizer", "max_seq_length", "embedder", "embed_batch_size", "index", "corpus", "same_source"),
    columns=FIRST_COLUMNS,
    drop_reasons=FIRST_DROP_REASONS,
    function=hard_negatives,
    rows_per_call=64,
    batch_size_setting="embed_batch_size",
)


def interleave(batch: dict, settings: NoSettings, inputs) -> dict:
    """The nextlong units: chunk 1, its negatives, chunk 2, its negatives, … within `max_seq_length`.

    When the unit is too long, negatives are dropped from the last chunk's backwards. The dependency distance of
    two consecutive chunks is the tokens of the negatives between them.
    """
    tokenizer = inputs.tokenizer
    out = {name: [] for name in UNIT_COLUMNS}
    for text, positions, contexts, status in zip(
        batch["text"], batch["positions"], batch["contexts"], batch["status"], strict=True
    ):
        unit, placed, lengths, distances = [], [], [], []
        if status == "ok":
            root = encode_documents(tokenizer, [text]).ids[0]
            negatives = encode_documents(
                tokenizer, inputs.corpus[[c["corpus_index"] for c in contexts]]["text"]
            ).ids
            kept, total = len(contexts), len(root) + sum(map(len, negatives))
            while total > inputs.max_seq_length:
                kept -= 1
                total -= len(negatives[kept])
            starts = [p["token_index"] for p in positions]
            for chunk, (start, end) in enumerate(zip(starts, [*starts[1:], len(root)], strict=True)):
                unit += root[start:end]
                after = [i for i in range(kept) if contexts[i]["token_indices"][0] == start]
                for i in after:
                    unit += negatives[i]
                    placed.append(contexts[i]["corpus_id"])
                    lengths.append(len(negatives[i]))
                if chunk + 1 < len(starts):
                    distances.append(sum(len(negatives[i]) for i in after))
        add_unit(out, unit, placed, lengths, len(contexts) - len(placed) if status == "ok" else 0, distances)
    return out


INTERLEAVE_STAGE = Stage(
    name="interleave",
    settings=NoSettings,
    inputs=("tokenizer", "corpus", "max_seq_length"),
    columns=UNIT_COLUMNS,
    drop_reasons=(),
    function=interleave,
    rows_per_call=64,
)

STAGES = (NEGATIVES_STAGE, INTERLEAVE_STAGE)
