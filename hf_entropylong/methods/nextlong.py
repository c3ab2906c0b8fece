"""The NExtLong baseline (negative document extension, Gao et al. 2025): negatives → interleave.

The root is split into meta-chunks m_1 … m_n; each chunk is followed by k hard negatives, the corpus chunks nearest
to it, so the model must reach back past look-alike distractors to continue the document. One root gives one
sample [m_1, n_11 … n_1k, m_2, n_21 … n_2k, …] of exactly `max_seq_length` tokens: one row, one attention span.

Matched to the released code (caskcsg/longcontext, `NExtLong/chunking.py` and its README):

- Chunking (`meta_chunks`): the text is split at "\\n" and whole lines are grouped greedily while their summed
  length (newlines not counted) stays ≤ `meta_chunk_chars`; a longer line is a chunk of its own and no line is
  ever cut. Cutting long lines at sentence ends (then at words) is an opt-in setting, `meta_chunk_sentences`.
- Index: the corpus is chunked the same way and every chunk is embedded and indexed (`builder.inputs`: the chunk
  dataset has a row per chunk with its document's id and row and its character offset; its FAISS index is built
  and cached like the document index, keyed by the corpus, the embedder and the chunking).
- Negatives: each root chunk queries the chunk index; chunks of the root's own document and of documents that
  copy the whole root (`index.exclusion.copies_whole_root`, at `near_duplicate_threshold`) are passed over, and
  a negative used by an earlier chunk is not used again. A chunk that shares passages or phrasing with the root
  stays: those are the hard negatives the method exists for. The number k of
  negatives per chunk is the smallest that fills `max_seq_length` (the README: samples are built to the target
  length), searched up to `max_negatives_per_chunk`.
- A root of fewer than two meta-chunks has nothing to interleave: it is dropped with the status `single_chunk`
  (counted on the card), not made into "root, then its nearest chunks".
- The sample is plain text, tokenized once: chunks and negatives joined by "\\n" (the separator the chunker cut
  at), no BOS/EOS per negative; it is truncated to `max_seq_length` at the end (the last chunk's negatives take
  the cut), and a sample that falls short is dropped (status `too_short`), as the README says of its datasets.

Where this differs: the released synthesis code is unpublished (the paper's Appendix C.2 gives pseudocode); the
separator and the per-root k search are this package's reading of it. A negative's `corpus_id` is
`<document id>@<character offset>`, its `corpus_index` its document's corpus row.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import numpy as np

from ..index.exclusion import EligibleSearchSettings, copies_whole_root, search_eligible
from ..settings import require_positive, setting
from ..stages import Stage
from ..stages.units import UNIT_COLUMNS, add_unit
from .common import (
    FILL_MARGIN,
    FIRST_COLUMNS,
    FIRST_DROP_REASONS,
    POSITION,
    assemble_row,
    complete,
    finish_row,
    start_first_stage,
    token_at,
    token_lengths,
)

SEPARATOR = "\n"
"""Joins chunks and negatives in a sample: the line break the chunker cut at."""


@dataclass
class ChunkSettings:
    """NExtLong's meta-chunks (of the roots, and of the corpus for the chunk index)."""

    meta_chunk_chars: int = setting(
        2048, help="nextlong: characters per meta-chunk, at most (whole lines; the released value 2048)."
    )
    meta_chunk_sentences: bool = setting(
        False,
        help="nextlong: cut a line longer than meta_chunk_chars at sentence ends (not the released chunking, "
        "which keeps such a line whole).",
    )

    def __post_init__(self):
        require_positive(self, "meta_chunk_chars")


@dataclass
class NExtLongSettings(ChunkSettings):
    """The nextlong baseline."""

    max_negatives_per_chunk: int = setting(
        512, help="nextlong: most hard negatives after a chunk (k is the least that fills max_seq_length)."
    )

    def __post_init__(self):
        ChunkSettings.__post_init__(self)
        require_positive(self, "max_negatives_per_chunk")


@dataclass
class NegativeSearchSettings(NExtLongSettings, EligibleSearchSettings):
    """What the negatives stage reads: the nextlong settings and how to search (prompt, nprobe, threshold)."""

    def __post_init__(self):
        NExtLongSettings.__post_init__(self)
        EligibleSearchSettings.__post_init__(self)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _lines(text: str) -> list[tuple[int, int]]:
    """Character spans of the "\\n"-separated lines of `text` (empty lines included)."""
    spans, start = [], 0
    for end in [m.start() for m in re.finditer("\n", text)] + [len(text)]:
        spans.append((start, end))
        start = end + 1
    return spans


def _sentence_pieces(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    """A line cut at sentence ends, and a sentence longer than `max_chars` at word starts."""
    cuts = [start] + [start + m.end() for m in _SENTENCE_END.finditer(text[start:end])]
    pieces = []
    for piece_start, piece_end in zip(cuts, [*cuts[1:], end], strict=True):
        while piece_end - piece_start > max_chars:
            cut = text.rfind(" ", piece_start + 1, piece_start + max_chars + 1)
            cut = cut if cut > piece_start else piece_start + max_chars
            pieces.append((piece_start, cut))
            piece_start = cut
        pieces.append((piece_start, piece_end))
    return pieces


def meta_chunks(text: str, max_chars: int, sentences: bool = False) -> list[tuple[int, int]]:
    """Character spans of the meta-chunks of `text`, in order.

    Lines ("\\n"-separated) are grouped greedily while the sum of their lengths (newlines not counted) stays
    ≤ `max_chars`; a line that does not fit starts the next chunk, and a line longer than `max_chars` is a chunk
    of its own (empty lines waiting before it are dropped, as in the released chunker). With `sentences`, such a
    line is first cut at sentence ends (then words) and the pieces are grouped the same way. Chunks may be blank
    (a text of empty lines): callers skip those.
    """
    pieces = []
    for start, end in _lines(text):
        if sentences and end - start > max_chars:
            pieces += _sentence_pieces(text, start, end, max_chars)
        else:
            pieces.append((start, end))
    chunks: list[tuple[int, int]] = []
    group_start, group_end, length = None, None, 0
    for start, end in pieces:
        if group_start is not None and length + end - start > max_chars:
            if length:
                chunks.append((group_start, group_end))
            group_start, length = start, 0
        elif group_start is None:
            group_start = start
        group_end, length = end, length + end - start
    if group_start is not None:
        chunks.append((group_start, group_end))
    return chunks


def text_chunks(text: str, settings: ChunkSettings) -> list[tuple[int, int]]:
    """The non-blank meta-chunks of `text` under `settings` (a root's, or a corpus document's for the index)."""
    spans = meta_chunks(text, settings.meta_chunk_chars, settings.meta_chunk_sentences)
    return [(start, end) for start, end in spans if text[start:end].strip()]


def chunk_corpus(batch: dict, indices: list[int], settings: ChunkSettings) -> dict:
    """Rows of the chunk dataset for a batch of corpus documents (`Dataset.map` with indices): one per chunk, with
    its document's `id` (so the exclusions see the document), its corpus row and the chunk's character offset."""
    out = {"id": [], "text": [], "document_index": [], "char_start": []}
    for row, document_id, text in zip(indices, batch["id"], batch["text"], strict=True):
        for start, end in text_chunks(text, settings):
            out["id"].append(document_id)
            out["text"].append(text[start:end])
            out["document_index"].append(row)
            out["char_start"].append(start)
    return out


def select_negatives(
    candidates: list[list[int]], lengths: dict[int, int], budget: int, limit: int
) -> tuple[int, list[list[int]]] | None:
    """The least k (≤ `limit`) whose negatives fill `budget` tokens, and each chunk's first k candidates not
    already used by an earlier chunk; None when even `limit` (or every candidate) falls short.

    Args:
        candidates: for each chunk, its eligible chunk rows, best first.
        lengths: tokens of each candidate.
        budget: tokens the negatives must fill.
        limit: the most negatives per chunk.
    """

    def take(k):
        used, chosen = set(), []
        for ranked in candidates:
            mine = [row for row in ranked if row not in used][:k]
            used.update(mine)
            chosen.append(mine)
        return chosen

    most = min(limit, max(map(len, candidates), default=0))
    if most == 0 or sum(lengths[r] for rows in take(most) for r in rows) < budget:
        return None
    low, high = 1, most  # the filled length grows with k: the least k that fills, by bisection
    while low < high:
        middle = (low + high) // 2
        if sum(lengths[r] for rows in take(middle) for r in rows) >= budget:
            high = middle
        else:
            low = middle + 1
    return low, take(low)


class WholeRootCopies:
    """The negatives' near-copy test: whether a chunk's whole document copies the whole root (each document read
    and compared once per root)."""

    def __init__(self, corpus, chunks_data, threshold: float):
        self.corpus, self.threshold, self.verdicts = corpus, threshold, {}
        self.document_of = np.asarray(chunks_data["document_index"])

    def __call__(self, root_text: str, chunk_row: int, chunk_text: str) -> bool:
        document = int(self.document_of[chunk_row])
        key = (root_text, document)
        if key not in self.verdicts:
            text = self.corpus[document]["text"]
            self.verdicts[key] = copies_whole_root(root_text, text, self.threshold)
        return self.verdicts[key]


def hard_negatives(batch: dict, settings: NegativeSearchSettings, inputs) -> dict:
    """The negatives stage: the root's meta-chunks, each with the k nearest corpus chunks that fill the row."""
    out, fits, offsets = start_first_stage(batch, inputs)
    texts, chunks_data = batch["text"], inputs.chunks
    spans = [text_chunks(text, settings) if ok else [] for text, ok in zip(texts, fits, strict=True)]
    for row, chunks in enumerate(spans):
        if fits[row] and len(chunks) < 2:  # nothing to interleave
            out["status"][row], spans[row] = "single_chunk", []
    found = search_eligible(
        inputs,
        list(zip(batch["id"], texts, strict=True)),
        [[text[start:end] for start, end in chunks] for text, chunks in zip(texts, spans, strict=True)],
        settings.max_negatives_per_chunk,
        settings,
        index=inputs.chunk_index,
        documents=chunks_data,
        near_copy=WholeRootCopies(inputs.corpus, chunks_data, settings.near_duplicate_threshold),
    )
    rows = sorted({hit for per_chunk, _ in found for hits in per_chunk for hit, _, _ in hits})
    found_rows = chunks_data[rows] if rows else {"id": [], "text": [], "document_index": [], "char_start": []}
    lengths = dict(zip(rows, token_lengths(inputs.tokenizer, found_rows["text"]), strict=True))
    where = {  # a chunk row → its document's corpus row and its corpus_id, `<document id>@<offset>`
        row: (document, f"{document_id}@{start}")
        for row, document, document_id, start in zip(
            rows, found_rows["document_index"], found_rows["id"], found_rows["char_start"], strict=True
        )
    }
    for row, (text, chunks, (per_chunk, excluded)) in enumerate(zip(texts, spans, found, strict=True)):
        root_tokens = len(offsets[row])
        budget = math.ceil(FILL_MARGIN * inputs.max_seq_length) - root_tokens
        ranked = [[hit for hit, _, _ in hits] for hits in per_chunk]
        score = {hit: similarity for hits in per_chunk for hit, _, similarity in hits}
        chosen = (
            select_negatives(ranked, lengths, budget, settings.max_negatives_per_chunk) if chunks else None
        )
        positions, documents = [], []
        for chunk, (start, end) in enumerate(chunks):
            token = token_at(offsets[row], start)
            positions.append(
                complete({"token_index": token, "char_start": start, "char_end": end, "token": "",
                          "query": text[start:end]}, POSITION)
            )  # fmt: skip
            for hit in chosen[1][chunk] if chosen else []:
                document, corpus_id = where[hit]
                documents.append((document, corpus_id, score[hit], [token]))
        finish_row(out, row, positions, documents, excluded)
        if chosen is None and any(ranked):  # negatives were found, but too few to fill the row
            out["status"][row] = "too_short"
    return out


NEGATIVES_STAGE = Stage(
    name="negatives",
    settings=NegativeSearchSettings,
    inputs=(
        "tokenizer",
        "max_seq_length",
        "embedder",
        "embed_batch_size",
        "chunk_index",
        "chunks",
        "corpus",
        "same_source",
    ),  # fmt: skip
    columns=FIRST_COLUMNS,
    drop_reasons=(*FIRST_DROP_REASONS, "single_chunk", "too_short"),
    function=hard_negatives,
    rows_per_call=16,
    batch_size_setting="embed_batch_size",
)


def interleave(batch: dict, settings: ChunkSettings, inputs) -> dict:
    """The nextlong sample: [m_1, its negatives, m_2, its negatives, …] as one text, tokenized once and cut to
    exactly `max_seq_length` tokens at the end; a root whose sample falls short gets the status `too_short`.

    A negative's length is its tokens in the row; the dependency distance of two consecutive chunks is the tokens
    between the end of one and the start of the next (the negatives in between).
    """
    out = {name: [] for name in UNIT_COLUMNS} | {"status": list(batch["status"])}
    for row, (text, positions, contexts) in enumerate(
        zip(batch["text"], batch["positions"], batch["contexts"], strict=True)
    ):
        pieces, kinds = [], []  # kinds: -1 for a root chunk, else the index of the negative
        if out["status"][row] == "ok":
            sources = sorted({c["corpus_index"] for c in contexts})
            source_text = dict(zip(sources, inputs.corpus[sources]["text"] if sources else [], strict=True))
            for position in positions:
                pieces.append(text[position["char_start"] : position["char_end"]])
                kinds.append(-1)
                for i, context in enumerate(contexts):
                    if context["token_indices"][0] == position["token_index"]:
                        pieces.append(_chunk_text(source_text[context["corpus_index"]], context, settings))
                        kinds.append(i)
        assembled = None
        if pieces:
            assembled = assemble_row(inputs.tokenizer, pieces, SEPARATOR, inputs.max_seq_length, keep="start")
            if assembled is None:
                out["status"][row] = "too_short"
        unit, spans, _ = assembled or ([], [], [])
        placed = [
            (kind, span) for kind, span in zip(kinds, spans, strict=True) if kind >= 0 and span[1] > span[0]
        ]
        chunk_spans = [
            span for kind, span in zip(kinds, spans, strict=True) if kind < 0 and span[1] > span[0]
        ]
        add_unit(
            out,
            unit,
            [contexts[i]["corpus_id"] for i, _ in placed],
            [end - start for _, (start, end) in placed],
            len(contexts) - len(placed) if unit else 0,
            [after[0] - before[1] for before, after in itertools.pairwise(chunk_spans)],
        )
    return out


def _chunk_text(document: str, context: dict, settings: ChunkSettings) -> str:
    """The text of the chunk a negative's `corpus_id` (`<document id>@<offset>`) names in its document."""
    start = int(context["corpus_id"].rsplit("@", 1)[1])
    return next(document[s:e] for s, e in text_chunks(document, settings) if s == start)


INTERLEAVE_STAGE = Stage(
    name="interleave",
    settings=ChunkSettings,
    inputs=("tokenizer", "corpus", "max_seq_length"),
    columns=UNIT_COLUMNS,
    drop_reasons=("too_short",),
    function=interleave,
    rows_per_call=16,
)

STAGES = (NEGATIVES_STAGE, INTERLEAVE_STAGE)
