"""The verification screen's sequences: which candidates are worth screening, and what the screen reads.

The screen (`verify_screen` = w, `stages.verify`) scores each (root, candidate) through a local root window: every
position p from the candidate and the w root tokens before it (`context_scores`, `root_window`), about |C| + w
tokens per cluster of positions instead of |C| + max P. A candidate is screened only when that costs at most
`SCREEN_MAX_SHARE` of its exact sequences (`worth_screening`); the others are verified exactly at once.

With `verify_screen_context` = n the screen also reads only n tokens of the candidate at each position: the
passage nearest the query, i.e. the n-token span (taken every n/2 tokens, the last one ending with the candidate)
that shares the most of the root's tokens within `SCREEN_QUERY_TOKENS` of the position, each shared token weighing
log(|D| / its count in D) (rare tokens of the root decide, common ones hardly count). The retrieval query spans
the same neighbourhood (16 words each side). A long candidate then costs the screen n + w tokens per position
cluster instead of |C| + w.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from .context_scores import RootCandidates, roots_context_scores, verification_plan

SCREEN_MAX_SHARE = 0.5
"""A candidate is screened only when its screen forwards at most this share of its exact sequences' tokens."""
SCREEN_QUERY_TOKENS = 24
"""Root tokens on each side of a position that choose the screen's passage of a candidate (`verify_screen_context`)."""


def planned_tokens(request: RootCandidates, window: int, root_window: int | None = None) -> list[int]:
    """Tokens of the sequences that score each candidate of `request` (whole root prefix, or `root_window`)."""
    sequences, (owners,) = verification_plan([request], window, root_window)
    return [sum(len(sequences[i].input_ids) for i in owner) for owner in owners]


def screen_passages(
    request: RootCandidates, length: int | None
) -> tuple[RootCandidates, list[list[tuple[int, int]]]]:
    """The screen's request: each candidate cut, at each of its positions, to its `length`-token passage nearest
    the query (see the module docstring; the whole candidate when `length` is None or the candidate is shorter).

    Returns:
        The request of passages, and for each candidate and position, where its score lands: (passage, index
        among that passage's positions).
    """
    if length is None:
        return request, [[(i, j) for j in range(len(wanted))] for i, wanted in enumerate(request.positions)]
    root = request.root_ids
    weight = {token: math.log(len(root) / count) for token, count in Counter(root).items()}
    index: dict[tuple[int, int], int] = {}
    contexts: list[Sequence[int]] = []
    positions: list[list[int]] = []
    where: list[list[tuple[int, int]]] = []
    for i, (context, wanted) in enumerate(zip(request.context_ids, request.positions, strict=True)):
        starts = list(range(0, max(1, len(context) - length + 1), max(1, length // 2)))
        if starts[-1] + length < len(context):
            starts.append(len(context) - length)
        vocabularies = [set(context[start : start + length]) for start in starts]
        where.append([])
        for p in wanted:
            query = set(root[max(0, p - SCREEN_QUERY_TOKENS) : p + SCREEN_QUERY_TOKENS])
            shared = [sum(weight[token] for token in query & vocabulary) for vocabulary in vocabularies]
            start = starts[shared.index(max(shared))]
            if (i, start) not in index:
                index[i, start] = len(contexts)
                contexts.append(context[start : start + length])
                positions.append([])
            passage = index[i, start]
            where[-1].append((passage, len(positions[passage])))
            positions[passage].append(p)
    return RootCandidates(root, contexts, positions), where


def screen_tokens(
    request: RootCandidates, window: int, screen_window: int, screen_context: int | None = None
) -> list[int]:
    """Tokens of the screen's sequences for each candidate of `request` (`screen_passages`, `root_window`)."""
    passages, where = screen_passages(request, screen_context)
    per_passage = planned_tokens(passages, window, screen_window)
    return [sum(per_passage[k] for k in {k for k, _ in landing}) for landing in where]


def worth_screening(
    request: RootCandidates, window: int, screen_window: int, screen_context: int | None = None
) -> list[bool]:
    """For each candidate: whether its screen forwards at most `SCREEN_MAX_SHARE` of its exact sequences' tokens."""
    exact = planned_tokens(request, window)
    screen = screen_tokens(request, window, screen_window, screen_context)
    return [s <= SCREEN_MAX_SHARE * e for s, e in zip(screen, exact, strict=True)]


def screen_entropies(
    model,
    requests: Sequence[RootCandidates],
    screen_window: int,
    screen_context: int | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
) -> list[list[np.ndarray]]:
    """Per root and candidate, the entropy at each of its positions through the screen: the local root window
    `screen_window` and, with `screen_context`, the candidate's passage nearest the query (`screen_passages`)."""
    cut = [screen_passages(request, screen_context) for request in requests]
    scores = roots_context_scores(
        model, [passages for passages, _ in cut], batch_size, max_length, screen_window
    )
    return [
        [np.array([found[k].entropy[j] for k, j in landing], dtype=np.float32) for landing in where]
        for found, (_, where) in zip(scores, cut, strict=True)
    ]
