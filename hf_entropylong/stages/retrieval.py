"""The retrieval stage: candidate contexts for every high-entropy position, from a dense index over the corpus.

Query windows. The query for a high-entropy token is the word(s) the token overlaps plus the `w` whitespace-separated
words on each side (w = 16), cut from the root text through the token's character span (a fast tokenizer's offset
mapping). Word boundaries are found once per text and the token's words by binary search, so a long root with many
positions costs O(log n + w) per query.

The stage (`RETRIEVAL_STAGE`, `retrieve_candidates`) embeds every query of a shard at once, searches the corpus
index (`index.corpus_index`) and keeps, per position, the first `top_k` hits that are neither the root nor a
near-copy of it (`index.exclusion`).
"""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass

import datasets

from ..index.exclusion import EligibleSearchSettings, search_eligible
from ..settings import require_positive, setting
from . import Stage


@dataclass
class RetrievalSettings:
    """How many candidates each high-entropy position keeps."""

    top_k: int = setting(
        5, help="Candidates kept per position, after excluding the root and its near-copies."
    )

    def __post_init__(self):
        require_positive(self, "top_k")


@dataclass
class RetrievalStageSettings(RetrievalSettings, EligibleSearchSettings):
    """What the retrieval stage reads: `top_k`, how to search and what to exclude."""

    def __post_init__(self):
        RetrievalSettings.__post_init__(self)
        EligibleSearchSettings.__post_init__(self)


_WORD = re.compile(r"\S+")


@functools.lru_cache(maxsize=8)
def _word_spans(text: str) -> tuple[list[int], list[int], list[str]]:
    """Start offsets, end offsets and words of `text` (cached: one root is queried at many positions)."""
    matches = list(_WORD.finditer(text))
    return [m.start() for m in matches], [m.end() for m in matches], [m.group() for m in matches]


def query_window(text: str, char_start: int, char_end: int, words_each_side: int = 16) -> str:
    """The query for the token at characters [char_start, char_end) of `text`.

    Args:
        text: the root document.
        char_start, char_end: the token's span, from `tokenizer(text, return_offsets_mapping=True)`.
        words_each_side: how many whitespace-separated words to take before and after the token's word(s).

    Returns:
        The token's word(s) and their neighbours, joined by single spaces, with their original spelling. A token
        inside a word gives the whole word; a leading space is ignored; a whitespace-only or empty span takes the
        next word (the last one at the end of the text) as its own.
    """
    starts, ends, words = _word_spans(text)
    if not words:
        return ""
    start = max(char_start, 0)
    end = max(char_end, start + 1)
    first = bisect.bisect_right(ends, start)  # first word ending after the span starts
    last = bisect.bisect_left(starts, end) - 1  # last word starting before the span ends
    if first > last:  # no word overlaps the span: the word after it
        first = last = min(first, len(words) - 1)
    return " ".join(words[max(0, first - words_each_side) : last + words_each_side + 1])


def retrieve_candidates(batch: dict, settings: RetrievalStageSettings, inputs) -> dict:
    """The retrieval stage: the top-k corpus documents of every position, the root and its near-copies excluded."""
    found = search_eligible(
        inputs,
        list(zip(batch["id"], batch["text"], strict=True)),
        [[position["query"] for position in positions] for positions in batch["positions"]],
        settings.top_k,
        settings,
    )
    out = {
        "retrieved": [],
        "num_excluded_self": [],
        "num_excluded_near_duplicate": [],
        "status": list(batch["status"]),
    }
    for row, (positions, (per_query, excluded)) in enumerate(zip(batch["positions"], found, strict=True)):
        retrieved = [
            {
                "token_index": position["token_index"],
                "corpus_index": hit,
                "corpus_id": corpus_id,
                "similarity": score,
            }
            for position, kept in zip(positions, per_query, strict=True)
            for hit, corpus_id, score in kept
        ]
        out["retrieved"].append(retrieved)
        out["num_excluded_self"].append(excluded["self"])
        out["num_excluded_near_duplicate"].append(excluded["near_duplicate"])
        if out["status"][row] == "ok" and not retrieved:
            out["status"][row] = "no_candidate"
    return out


RETRIEVED = {
    "token_index": datasets.Value("int32"),
    "corpus_index": datasets.Value("int64"),
    "corpus_id": datasets.Value("string"),
    "similarity": datasets.Value("float32"),
}
RETRIEVAL_STAGE = Stage(
    name="retrieval",
    settings=RetrievalStageSettings,
    inputs=("embedder", "embed_batch_size", "index", "corpus", "same_source"),
    columns={
        "retrieved": datasets.List(RETRIEVED),
        "num_excluded_self": datasets.Value("int32"),
        "num_excluded_near_duplicate": datasets.Value("int32"),
    },
    drop_reasons=("no_candidate",),
    function=retrieve_candidates,
    batch_size_setting="embed_batch_size",
)
