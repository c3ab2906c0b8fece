"""Entropy-reduction verification: does prepending a candidate context make the root predictable?

For a candidate C retrieved for positions P of root D, the model reads `C + D[:p]` and we take the entropy of
its prediction of D[p] for every p in P, then ΔI = (H_p(D) − H_p([C; D])) / H_p(D); C is kept when ΔI ≥ ε.

Criterion (`verify_criterion`). `entropy`, the paper's rule: a (position, candidate) pair is kept when ΔI ≥ ε.
`entropy_and_target`, an ablation beyond the paper: kept when ΔI ≥ ε and the context also raises the probability
of the token that actually comes, log p(D[p] | C + D[:p]) > log p(D[p] | D[:p]). Entropy falls whenever the model
becomes sure, right or wrong: a context full of look-alike names can make it confident of the wrong one, and the
stricter rule rejects such pairs. Both log-probabilities come from the forwards that give the entropies (the
entropy stage's `target_logprob`, and the same gathered rows here), so the rule costs no extra LM pass; every
candidate records `target_logprob_with_context` whichever rule decides (`is_kept`).

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

Local root window (`root_window` = w, opt-in, not the paper's method): position p is verified from
C + D[max(0, p − w):p] instead of C + D[:p]. A candidate's positions are taken in order; the next one joins the
current sequence (which then reaches from the first one's window start to it) when that adds no more tokens
than a sequence of its own would, so every position sees at least its w root tokens. ΔI still compares with the
entropy given the whole root: a candidate must explain what the far root would have explained. On long roots
this cuts the cost of a candidate from |C| + max P to about |C| + w per position cluster;
`benchmarks/builder_bench.py` prints how often its decisions agree with the exact ones.

The build's verification stage (`VERIFY_STAGE`, `verify_candidates`) groups each root's retrieved hits by
document, verifies every distinct document once, records every (position, document) pair tried with its ΔI,
and keeps a document as a verified context (with its best ΔI and the positions it passed) when any pair passed.
Schema: every pair tried is a `candidates` entry, `kept` when it passed; every document kept is a `contexts` entry
with `verified` true (a baseline's placed documents have it false: `hf_entropylong.methods`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, NamedTuple

import datasets
import numpy as np
import torch

from ..models import context_window, encode_documents
from ..settings import require_positive, setting
from . import Stage
from .retrieval import RETRIEVED
from .token_scores import TokenScores, head_scores, hidden_states

MAX_PADDING = 0.1
"""A forward is closed before its padding exceeds this share of its real tokens."""

VERIFY_CRITERIA = ("entropy", "entropy_and_target")


@dataclass
class VerifySettings:
    """When a retrieved candidate counts as a verified context."""

    output_neutral: ClassVar[tuple[str, ...]] = ("verify_batch_size",)

    epsilon: float = setting(0.4, help="Keep a candidate when ΔI >= epsilon (the paper: 0.4).")
    verify_criterion: Literal["entropy", "entropy_and_target"] = setting(
        "entropy",
        help="Which (position, candidate) pairs are kept: entropy (the paper: ΔI >= epsilon) or entropy_and_target "
        "(also the probability of the root's actual token there must rise with the candidate: rejects contexts "
        "that make the model confident of a wrong token; an ablation beyond the paper).",
    )
    verify_root_window: int | None = setting(
        None,
        help="Verify each position from the candidate and only this many root tokens before it (cheaper on long "
        "roots, not the paper's method: see BENCHMARKS.md for its agreement); the whole root prefix when unset.",
    )
    verify_batch_size: int = setting(
        8, help="(candidate; root prefix) sequences per LM forward pass, at most."
    )

    def __post_init__(self):
        if not 0 < self.epsilon <= 1:
            raise ValueError(f"epsilon must be in (0, 1], got {self.epsilon}.")
        if self.verify_criterion not in VERIFY_CRITERIA:
            raise ValueError(
                f"verify_criterion must be one of {', '.join(VERIFY_CRITERIA)}, got {self.verify_criterion!r}."
            )
        require_positive(self, "verify_root_window", "verify_batch_size")


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


def delta_i(baseline: np.ndarray | float, with_context: np.ndarray | float) -> np.ndarray:
    """Relative entropy reduction ΔI = (H − H′) / H, elementwise (float64); 0 where H is 0.

    Args:
        baseline: H, the entropy at the position with the root alone.
        with_context: H′, the entropy there with the candidate prepended.
    """
    baseline = np.asarray(baseline, dtype=np.float64)
    with_context = np.asarray(with_context, dtype=np.float64)
    safe = np.where(baseline > 0, baseline, 1.0)
    return np.where(baseline > 0, (baseline - with_context) / safe, 0.0)


def is_kept(
    delta: np.ndarray | float, target_gain: np.ndarray | float, settings: VerifySettings
) -> np.ndarray:
    """Whether (position, candidate) pairs pass verification under `settings.verify_criterion`, elementwise.

    Args:
        delta: ΔI of each pair.
        target_gain: log p(actual token | candidate + root prefix) − log p(actual token | root prefix); read only by
            the `entropy_and_target` criterion, which keeps a pair when it is positive.
        settings: `epsilon` and `verify_criterion`.
    """
    kept = np.asarray(delta, dtype=np.float64) >= settings.epsilon
    if settings.verify_criterion == "entropy_and_target":
        kept &= np.asarray(target_gain, dtype=np.float64) > 0
    return kept


def verify_candidates(batch: dict, settings: VerifySettings, inputs) -> dict:
    """The verification stage: ΔI of every (position, candidate) pair of each root, and its verified contexts."""
    tokenizer = inputs.tokenizer
    out = {"candidates": [], "contexts": [], "status": list(batch["status"])}
    grouped, requests = [], []
    for text, retrieved in zip(batch["text"], batch["retrieved"], strict=True):
        by_candidate: dict[int, list[dict]] = {}
        for hit in retrieved:
            by_candidate.setdefault(hit["corpus_index"], []).append(hit)
        grouped.append(by_candidate)
        if by_candidate:
            requests.append(
                RootCandidates(
                    encode_documents(tokenizer, [text]).ids[0],
                    encode_documents(tokenizer, inputs.corpus[list(by_candidate)]["text"]).ids,
                    [[hit["token_index"] for hit in hits] for hits in by_candidate.values()],
                )
            )
    scores = iter(
        roots_context_scores(
            inputs.lm,
            requests,
            batch_size=settings.verify_batch_size,
            max_length=inputs.lm_window,
            root_window=settings.verify_root_window,
        )
    )
    for row, (positions, by_candidate) in enumerate(zip(batch["positions"], grouped, strict=True)):
        candidates, verified = [], []
        baseline = {p["token_index"]: (p["entropy"], p["target_logprob"]) for p in positions}
        for (corpus_index, hits), (entropies, logprobs) in zip(
            by_candidate.items(), next(scores) if by_candidate else [], strict=True
        ):
            alone = np.array([baseline[hit["token_index"]] for hit in hits], dtype=np.float64).reshape(-1, 2)
            gains = delta_i(alone[:, 0], entropies)
            kept = is_kept(gains, logprobs - alone[:, 1], settings)
            for hit, entropy, logprob, gain, keep in zip(hits, entropies, logprobs, gains, kept, strict=True):
                candidates.append(
                    {
                        **hit,
                        "entropy_with_context": float(entropy),
                        "target_logprob_with_context": float(logprob),
                        "delta_i": float(gain),
                        "kept": bool(keep),
                    }
                )
            if kept.any():
                verified.append(
                    {
                        "corpus_index": corpus_index,
                        "corpus_id": hits[0]["corpus_id"],
                        "delta_i": float(gains[kept].max()),
                        "token_indices": [
                            hit["token_index"] for hit, keep in zip(hits, kept, strict=True) if keep
                        ],
                        "verified": True,
                    }
                )
        verified.sort(key=lambda context: min(context["token_indices"]))
        out["candidates"].append(candidates)
        out["contexts"].append(verified)
        if by_candidate and not verified:
            out["status"][row] = "no_verified_context"
    return out


VERIFY_STAGE = Stage(
    name="verify",
    settings=VerifySettings,
    inputs=("tokenizer", "lm", "lm_window", "corpus"),
    columns={
        "candidates": datasets.List(
            {
                **RETRIEVED,
                "entropy_with_context": datasets.Value("float32"),
                "target_logprob_with_context": datasets.Value("float32"),
                "delta_i": datasets.Value("float32"),
                "kept": datasets.Value("bool"),
            }
        ),
        "contexts": datasets.List(
            {
                "corpus_index": datasets.Value("int64"),
                "corpus_id": datasets.Value("string"),
                "delta_i": datasets.Value("float32"),
                "token_indices": datasets.List(datasets.Value("int32")),
                "verified": datasets.Value("bool"),
            }
        ),
    },
    drop_reasons=("no_verified_context",),
    function=verify_candidates,
    rows_per_call=8,
    batch_size_setting="verify_batch_size",
)
