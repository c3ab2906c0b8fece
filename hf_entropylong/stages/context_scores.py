"""Entropy of a root's tokens with a candidate context prepended: the LM side of verification.

For a candidate C retrieved for positions P of root D, the model reads `C + D[:p]` and we take the entropy of its
prediction of D[p] for every p in P, and log p(D[p]) (`stages.verify` turns them into ΔI and decisions).

Only what is needed is computed. Each distinct candidate runs once per root: one sequence C + D[:max P] serves
every position it was retrieved for, so a root's verification costs Σ over its distinct candidates of
|C| + max P tokens, the exact minimum. The LM head runs only on the hidden states that predict the verified
positions, never on the whole sequence.

Batches. The sequences of all the roots of a call are sorted by length together and cut into forwards of at
most `batch_size` sequences; a forward is closed early when right-padding it to its longest sequence would
add more than `max_padding` (10%) of its real tokens. The tokens forwarded are therefore at most 1.1× the
exact minimum, whatever the spread of lengths. As in `entropy`, the body runs without a padding mask (causal
attention: a real token never sees the padding after it), and only the gathered rows reach the head. The
entropies are those of one sequence at a time up to float rounding, so the decisions are the same.

Windows (W = `max_length`, default the model's `max_position_embeddings`): the positions p of a candidate for
which C + D[:p] fits W share one sequence, C + D[:max p]. Each other position gets its own sequence in which the
context keeps its last min(|C|, max(W − p, ⌊W/2⌋)) tokens (the end nearest the root) and the root prefix the
tokens just before p that fill the rest: the context takes at most half the window whenever the root prefix
needs more, and all the room the root prefix leaves otherwise.

Local root window (`root_window` = w): position p is predicted from C + D[max(0, p − w):p] instead of
C + D[:p]. A candidate's positions are taken in order; the next one joins the current sequence (which then
reaches from the first one's window start to it) when that adds no more tokens than a sequence of its own would,
so every position sees at least its w root tokens. On long roots this cuts the cost of a candidate from
|C| + max P to about |C| + w per position cluster. The opt-in `verify_root_window` decides with it, and the
verification screen (`verify_screen`) uses it to choose which candidates are verified exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from ..models import context_window
from .token_scores import TokenScores, head_scores, hidden_states

MAX_PADDING = 0.1
"""A forward is closed before its padding exceeds this share of its real tokens."""


class RootCandidates(NamedTuple):
    """One root and the candidates to verify on it: `positions[i]` are the root positions of `context_ids[i]`."""

    root_ids: Sequence[int]
    context_ids: Sequence[Sequence[int]]
    positions: Sequence[Sequence[int]]


class VerifySequence(NamedTuple):
    """One LM input: its ids and, for each verified root position, the row whose hidden state predicts it and the
    root's token there (the target of that prediction)."""

    input_ids: list[int]
    rows: dict[int, int]
    targets: dict[int, int]


def _truncated(context: Sequence[int], root_ids: Sequence[int], p: int, window: int) -> VerifySequence:
    """The sequence verifying position p alone in a window too short for context + root prefix."""
    kept = min(len(context), max(window - p, window // 2))
    root_start = max(0, p - (window - kept))
    return VerifySequence(
        list(context[len(context) - kept :]) + list(root_ids[root_start:p]),
        {p: kept + (p - root_start) - 1},
        {p: root_ids[p]},
    )


def plan_sequences(
    context: Sequence[int],
    root_ids: Sequence[int],
    positions: Sequence[int],
    window: int,
    root_window: int | None = None,
) -> list[VerifySequence]:
    """The sequences that verify one candidate at `positions` of a root (see the module docstring).

    Args:
        context: the candidate's ids.
        root_ids: the root's ids.
        positions: root positions to verify (duplicates allowed).
        window: the LM window in tokens.
        root_window: when set, each position needs only this many root tokens before it.
    """
    sequences: list[VerifySequence] = []
    open_sequence, start, last = None, 0, 0  # the sequence positions may join: it holds root[start:last]
    for p in sorted(set(positions)):
        needed_start = 0 if root_window is None else max(0, p - root_window)
        if len(context) + p - needed_start > window:
            sequences.append(_truncated(context, root_ids, p, window))
            open_sequence = None
            continue
        # p joins the open sequence when it still fits the window and adds no more tokens than its own would.
        joins = len(context) + p - start <= window and p - last <= len(context) + p - needed_start
        if open_sequence is not None and joins:
            open_sequence.input_ids.extend(root_ids[last:p])
        else:
            start = needed_start
            open_sequence = VerifySequence(list(context) + list(root_ids[start:p]), {}, {})
            sequences.append(open_sequence)
        open_sequence.rows[p] = len(context) + p - start - 1
        open_sequence.targets[p] = root_ids[p]
        last = p
    return sequences


def padded_batches(
    lengths: Sequence[int], batch_size: int, max_padding: float = MAX_PADDING
) -> list[list[int]]:
    """Indices of sequences of `lengths`, shortest first, grouped into right-padded forwards.

    A forward takes at most `batch_size` sequences, and is closed before padding to its longest sequence would add
    more than `max_padding` of its real tokens: the tokens forwarded are at most (1 + max_padding) × Σ lengths.
    """
    batches: list[list[int]] = []
    real = 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        count = len(batches[-1]) + 1 if batches else 0
        if not batches or count > batch_size or count * lengths[i] > (1 + max_padding) * (real + lengths[i]):
            batches.append([])
            real = 0
        batches[-1].append(i)
        real += lengths[i]
    return batches


def _sequence_scores(
    model, sequences: Sequence[VerifySequence], batch_size: int
) -> list[dict[int, tuple[float, float]]]:
    """For each sequence, at each of its verified positions: the entropy of the prediction and log p(target)."""
    found: list[dict[int, tuple[float, float]]] = [{} for _ in sequences]
    for batch in padded_batches([len(s.input_ids) for s in sequences], batch_size):
        ids = torch.zeros(len(batch), max(len(sequences[i].input_ids) for i in batch), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : len(sequences[i].input_ids)] = torch.tensor(sequences[i].input_ids)
        hidden = hidden_states(model, ids.to(model.device))  # right padding: no mask needed
        batch_rows = torch.tensor([row for row, i in enumerate(batch) for _ in sequences[i].rows])
        seq_rows = torch.tensor([r for i in batch for r in sequences[i].rows.values()])
        targets = torch.tensor([sequences[i].targets[p] for i in batch for p in sequences[i].rows])
        entropies, logprobs = head_scores(
            model, hidden[batch_rows.to(hidden.device), seq_rows.to(hidden.device)], targets
        )
        scores = iter(zip(entropies.tolist(), logprobs.tolist(), strict=True))
        for i in batch:
            for p in sequences[i].rows:
                found[i][p] = next(scores)
    return found


def _check(request: RootCandidates, number: int) -> None:
    if len(request.context_ids) != len(request.positions):
        raise ValueError(f"{len(request.context_ids)} contexts but {len(request.positions)} position lists")
    for i, (context, wanted) in enumerate(zip(request.context_ids, request.positions, strict=True)):
        for p in wanted:
            if not 0 <= p < len(request.root_ids) or (p == 0 and not context):
                raise ValueError(
                    f"root {number}, candidate {i}: position {p} has nothing to predict it from "
                    f"(root of {len(request.root_ids)} tokens)"
                )


def verification_plan(
    requests: Sequence[RootCandidates], window: int, root_window: int | None = None
) -> tuple[list[VerifySequence], list[list[tuple[int, ...]]]]:
    """All the sequences that verify `requests`, each distinct (root, candidate) once.

    Returns:
        The sequences, and for each request and candidate the indices of the sequences that hold its positions.
    """
    sequences: list[VerifySequence] = []
    owners: list[list[tuple[int, ...]]] = []
    for number, request in enumerate(requests):
        _check(request, number)
        distinct: dict[tuple[int, ...], set[int]] = {}  # a candidate given twice still runs once
        for context, wanted in zip(request.context_ids, request.positions, strict=True):
            distinct.setdefault(tuple(context), set()).update(int(p) for p in wanted)
        planned = {}
        for context, wanted in distinct.items():
            first = len(sequences)
            sequences += plan_sequences(context, request.root_ids, wanted, window, root_window)
            planned[context] = tuple(range(first, len(sequences)))
        owners.append([planned[tuple(context)] for context in request.context_ids])
    return sequences, owners


@torch.inference_mode()
def roots_context_scores(
    model,
    requests: Sequence[RootCandidates],
    batch_size: int = 8,
    max_length: int | None = None,
    root_window: int | None = None,
) -> list[list[TokenScores]]:
    """Entropy of the prediction of `root_ids[p]` with each candidate prepended, for each p of its positions, and
    log p(`root_ids[p]`), for several roots at once: their sequences share forwards (less padding).

    Args:
        model: a transformers causal LM.
        requests: per root, its encoded ids (exactly as scored for the baseline entropy), its encoded candidates
            (the same encoding as in the training unit) and, for each candidate, the root positions to verify.
        batch_size: sequences per forward, at most.
        max_length: the LM window (default: `model.config.max_position_embeddings`).
        root_window: when set, each position is predicted from the candidate and at least this many root tokens
            before it instead of the whole root prefix (see the module docstring).

    Returns:
        For each request, for each of its candidates, `TokenScores` of float32 arrays aligned with its positions:
        the entropy of the prediction of `root_ids[p]` with the candidate prepended, and log p(`root_ids[p]`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    sequences, owners = verification_plan(requests, context_window(model, max_length), root_window)
    found = _sequence_scores(model, sequences, batch_size)
    results = []
    for request, candidate_owners in zip(requests, owners, strict=True):
        results.append([])
        for wanted, owner in zip(request.positions, candidate_owners, strict=True):
            merged = {p: value for i in owner for p, value in found[i].items()}
            values = np.array([merged[p] for p in wanted], dtype=np.float32).reshape(len(wanted), 2)
            results[-1].append(TokenScores(values[:, 0].copy(), values[:, 1].copy()))
    return results
