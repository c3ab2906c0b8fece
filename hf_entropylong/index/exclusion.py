"""Exclusion of the root itself and of near-copies of it from everything a method places before a root.

Prepending a copy of a text trivially lowers its entropy and proves nothing, so the root (same id, when roots and
corpus are one source) and near-copies of it are never candidates, for any method.

Near-copies. Both texts become sets of word 4-shingles (lower-cased, punctuation stripped); a candidate is a
near-copy when the shingles they share are at least `near_duplicate_threshold` (0.3) of the smaller set. Taking the
smaller set catches a copy in either direction: the root inside a longer document, and a candidate that is a
passage of the root (a long root assembled from corpus documents). Short shingles and a low threshold survive
edits: each changed word breaks at most 4 shingles, so a root with a fifth of its words replaced still shares
about a third of them, while real neighbours of a Wikipedia summary (`benchmarks/retrieval_bench.py`) share at most
a fifth.

`search_eligible` is the search every dense method runs: its queries searched in the corpus index, and of each
query's hits the first k that are neither the root nor a near-copy of it, with the exclusions counted by reason.
A method whose hits are passages (NExtLong's chunks, meant to be the root's look-alikes) passes its own near-copy
test: `copies_whole_root`, the hit's whole document against the whole root.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from ..settings import setting
from .corpus_index import SearchSettings, search_corpus

_PUNCT = re.compile(r"[^\w\s]")


@dataclass
class ExclusionSettings:
    """When a corpus document counts as a near-copy of a root (and may not be placed before it)."""

    near_duplicate_threshold: float = setting(
        0.3,
        help="Word 4-shingles shared by the root and a candidate, as a share of the smaller text's, that mark "
        "the candidate a near-copy (every method).",
    )

    def __post_init__(self):
        if not 0 < self.near_duplicate_threshold <= 1:
            raise ValueError(
                f"near_duplicate_threshold must be in (0, 1], got {self.near_duplicate_threshold}."
            )


@dataclass
class EligibleSearchSettings(SearchSettings, ExclusionSettings):
    """What `search_eligible` reads: how to search and what to exclude."""

    def __post_init__(self):
        SearchSettings.__post_init__(self)
        ExclusionSettings.__post_init__(self)


def _normalise(text: str) -> list[str]:
    return _PUNCT.sub(" ", text.lower()).split()


def _shingles(words: list[str], size: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def is_near_duplicate(
    root_text: str, candidate_text: str, threshold: float = 0.3, shingle_words: int = 4
) -> bool:
    """Whether `candidate_text` is (nearly) a copy of `root_text`, contains one, or is (nearly) a passage of it.

    Both texts are lower-cased and stripped of punctuation. They are near-copies when the `shingle_words`-word
    shingles they share are at least `threshold` of the smaller text's shingles. When either text is shorter than
    a shingle, they are near-copies when one's normalised words contain the other's. An empty root (nothing but
    punctuation) has no copy.
    """
    root, candidate = _normalise(root_text), _normalise(candidate_text)
    if len(root) < shingle_words or len(candidate) < shingle_words:
        shorter, longer = sorted((f" {' '.join(root)} ", f" {' '.join(candidate)} "), key=len)
        return bool(shorter.strip()) and shorter in longer
    root_shingles, candidate_shingles = _shingles(root, shingle_words), _shingles(candidate, shingle_words)
    shared = len(root_shingles & candidate_shingles)
    return shared >= threshold * min(len(root_shingles), len(candidate_shingles))


def copies_whole_root(
    root_text: str, document_text: str, threshold: float = 0.3, shingle_words: int = 4
) -> bool:
    """Whether `document_text` is (nearly) a copy of the whole root or contains one: the shingles they share are
    at least `threshold` of the root's own. A document that merely shares passages or phrasing with the root (a
    hard negative) is not; a root shorter than a shingle is copied when its words appear in the document."""
    root, document = _normalise(root_text), _normalise(document_text)
    if len(root) < shingle_words:
        return bool(root) and f" {' '.join(root)} " in f" {' '.join(document)} "
    root_shingles = _shingles(root, shingle_words)
    return len(root_shingles & _shingles(document, shingle_words)) >= threshold * len(root_shingles)


def exclusion(
    root_id: str, root_text: str, corpus_id: str, corpus_text: str, same_source: bool, threshold: float
) -> str | None:
    """Why a corpus document may not serve a root: "self" (its own row), "near_duplicate", or None (it may)."""
    if same_source and corpus_id == root_id:
        return "self"
    if is_near_duplicate(root_text, corpus_text, threshold=threshold):
        return "near_duplicate"
    return None


NearCopy = Callable[[str, int, str], bool]
"""(root text, hit row, hit text) → whether the hit may not serve the root as a near-copy of it."""


def eligible_neighbours(
    root_id, root_text, scores, hits, corpus_rows, k, same_source, threshold, taken=(), near_copy=None
) -> tuple[list[tuple[int, str, float]], Counter]:
    """The first k eligible hits of a query, best first, as (corpus row, corpus id, similarity), and how many were
    excluded on the way, by reason (`exclusion`, or "self" and `near_copy` when given). Rows in `taken` (already
    used for the same root) are passed over without counting."""
    kept, excluded = [], Counter()
    for score, hit in zip(scores, hits, strict=True):
        if hit < 0 or len(kept) == k or hit in taken:
            continue
        corpus_id, corpus_text = corpus_rows[int(hit)]
        if near_copy is None:
            reason = exclusion(root_id, root_text, corpus_id, corpus_text, same_source, threshold)
        elif same_source and corpus_id == root_id:
            reason = "self"
        else:
            reason = "near_duplicate" if near_copy(root_text, int(hit), corpus_text) else None
        if reason:
            excluded[reason] += 1
        else:
            kept.append((int(hit), corpus_id, float(score)))
    return kept, excluded


def search_eligible(
    inputs,
    roots: list[tuple[str, str]],
    queries: list[list[str]],
    k: int,
    settings,
    distinct: bool = False,
    index=None,
    documents=None,
    near_copy: NearCopy | None = None,
) -> list[tuple[list[list[tuple[int, str, float]]], Counter]]:
    """Search every query of every root and keep, per query, its first `k` eligible hits (`eligible_neighbours`).

    Args:
        inputs: the build's inputs (`embedder`, `embed_batch_size`, `index`, `corpus`, `same_source`).
        roots: (id, text) of each root.
        queries: each root's queries.
        k: documents kept per query.
        settings: `EligibleSearchSettings` (query prompt, nprobe, near-copy threshold).
        distinct: a document kept for one query of a root is passed over by the root's later queries.
        index, documents: another index and the rows its ids point to (`corpus_index.search_corpus`); a row's
            `id` is what the root's own id is compared with.
        near_copy: the near-copy test in place of `is_near_duplicate` at the settings' threshold.

    Returns:
        For each root: for each of its queries the kept (corpus row, corpus id, similarity), best first; and the
        documents excluded, by reason.
    """
    scores, hits, corpus_rows = search_corpus(
        inputs, [q for per_root in queries for q in per_root], k, settings, index, documents
    )
    results, query = [], 0
    for (root_id, text), root_queries in zip(roots, queries, strict=True):
        per_query, excluded, taken = [], Counter(), set()
        for _ in root_queries:
            kept, excluded_here = eligible_neighbours(
                root_id, text, scores[query], hits[query], corpus_rows, k, inputs.same_source,
                settings.near_duplicate_threshold, taken, near_copy,
            )  # fmt: skip
            excluded.update(excluded_here)
            per_query.append(kept)
            if distinct:
                taken.update(row for row, _, _ in kept)
            query += 1
        results.append((per_query, excluded))
    return results
