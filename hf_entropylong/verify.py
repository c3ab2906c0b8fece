"""Entropy-reduction verification: does prepending a candidate context make the root predictable?

For a candidate C retrieved for positions P of root D, the model reads `C + D[:p]` and we take the entropy of
its prediction of D[p] for every p in P, then ΔI = (H_p(D) − H_p([C; D])) / H_p(D); C is kept when ΔI ≥ ε.

Only what is needed is computed: each distinct candidate runs once per root (one forward serves every position
it was retrieved for); the sequence stops at the last position needed; the LM head runs only on the hidden
states that predict the verified positions, not on the whole sequence; candidates are batched by length.

Batches: sequences are sorted by length and right-padded; as in `entropy`, the body runs without a padding mask
(causal attention: a real token never sees the padding after it), and only the gathered rows reach the head.

Windows (W = `max_length`, default the model's `max_position_embeddings`): the positions p of a candidate for
which C + D[:p] fits W share one sequence, C + D[:max p]. Each other position gets its own sequence in which the
context keeps its last min(|C|, max(W − p, ⌊W/2⌋)) tokens (the end nearest the root) and the root prefix the
tokens just before p that fill the rest: the context takes at most half the window whenever the root prefix
needs more, and all the room the root prefix leaves otherwise.

The build's verification stage (`VERIFY_STAGE`, `verify_candidates`) groups each root's retrieved hits by
document, verifies every distinct document once, records every (position, document) pair tried with its ΔI,
and keeps a document as a verified context (with its best ΔI and the positions it passed) when any pair passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import datasets
import numpy as np
import torch

from .entropy import head_entropy, hidden_states
from .models import context_window, encode_document
from .retrieval import RETRIEVED
from .stage import Stage, setting


@dataclass
class VerifySettings:
    """When a retrieved candidate counts as a verified context."""

    output_neutral: ClassVar[tuple[str, ...]] = ("verify_batch_size",)

    epsilon: float = setting(0.4, help="Keep a candidate when ΔI >= epsilon (the paper: 0.4).")
    verify_batch_size: int = setting(8, help="(candidate; root prefix) sequences per LM forward pass.")

    def __post_init__(self):
        if not 0 < self.epsilon <= 1:
            raise ValueError(f"epsilon must be in (0, 1], got {self.epsilon}.")
        if self.verify_batch_size < 1:
            raise ValueError(f"verify_batch_size must be positive, got {self.verify_batch_size}.")


def _truncated(context: Sequence[int], root_ids: Sequence[int], p: int, window: int) -> tuple[list[int], int]:
    """Input ids for verifying position p alone in a window too short for context + root prefix, and its row."""
    kept = min(len(context), max(window - p, window // 2))
    root_start = max(0, p - (window - kept))
    return list(context[len(context) - kept :]) + list(root_ids[root_start:p]), kept + (p - root_start) - 1


def _plan(context: Sequence[int], root_ids: Sequence[int], positions: Sequence[int], window: int):
    """Sequences that verify one candidate: (input ids, {position: row whose hidden state predicts it})."""
    fitting = sorted(p for p in set(positions) if len(context) + p <= window)
    plans = []
    if fitting:  # one sequence, no truncation: the whole context and the root up to the last position
        plans.append(
            (list(context) + list(root_ids[: fitting[-1]]), {p: len(context) + p - 1 for p in fitting})
        )
    for p in sorted(set(positions) - set(fitting)):
        ids, row = _truncated(context, root_ids, p, window)
        plans.append((ids, {p: row}))
    return plans


@torch.inference_mode()
def context_entropy(
    model,
    context_ids: Sequence[Sequence[int]],
    root_ids: Sequence[int],
    positions: Sequence[Sequence[int]],
    batch_size: int = 8,
    max_length: int | None = None,
) -> list[np.ndarray]:
    """Entropy of the prediction of `root_ids[p]` with `context_ids[i]` prepended, for each p in `positions[i]`.

    Args:
        model: a transformers causal LM.
        context_ids: one encoded candidate per entry (the same encoding as in the training unit).
        root_ids: the encoded root, exactly as scored for the baseline entropy.
        positions: for each candidate, the root positions (indices into `root_ids`) to verify.
        batch_size: sequences per forward.
        max_length: the LM window (default: `model.config.max_position_embeddings`).

    Returns:
        For each candidate, float32 entropies aligned with its `positions`.
    """
    if len(context_ids) != len(positions):
        raise ValueError(f"{len(context_ids)} contexts but {len(positions)} position lists")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    window = context_window(model, max_length)
    distinct: dict[tuple[int, ...], set[int]] = {}  # a candidate given twice still runs once
    for i, (context, wanted) in enumerate(zip(context_ids, positions, strict=True)):
        for p in wanted:
            if not 0 <= p < len(root_ids) or (p == 0 and not context):
                raise ValueError(
                    f"candidate {i}: position {p} has nothing to predict it from (root of {len(root_ids)} tokens)"
                )
        distinct.setdefault(tuple(context), set()).update(int(p) for p in wanted)
    keys = list(distinct)
    items = []  # (distinct candidate, input ids, {position: row})
    for candidate, context in enumerate(keys):
        for ids, rows in _plan(context, root_ids, distinct[context], window):
            items.append((candidate, ids, rows))
    found: list[dict[int, float]] = [{} for _ in keys]
    items.sort(key=lambda item: len(item[1]))
    for start in range(0, len(items), batch_size):
        group = items[start : start + batch_size]
        longest = len(group[-1][1])
        ids = torch.zeros(len(group), longest, dtype=torch.long)
        for row, (_, item_ids, _) in enumerate(group):
            ids[row, : len(item_ids)] = torch.tensor(item_ids)
        hidden = hidden_states(model, ids.to(model.device))  # right padding: no mask needed
        batch_rows = [row for row, item in enumerate(group) for _ in item[2]]
        seq_rows = [r for item in group for r in item[2].values()]
        gathered = hidden[
            torch.tensor(batch_rows, device=hidden.device), torch.tensor(seq_rows, device=hidden.device)
        ]
        entropies = head_entropy(model, gathered).cpu().numpy()
        k = 0
        for candidate, _, rows in group:
            for p in rows:
                found[candidate][p] = float(entropies[k])
                k += 1
    index = {context: i for i, context in enumerate(keys)}
    return [
        np.array([found[index[tuple(context)]][p] for p in wanted], dtype=np.float32)
        for context, wanted in zip(context_ids, positions, strict=True)
    ]


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


def verify_candidates(batch: dict, settings: VerifySettings, inputs) -> dict:
    """The verification stage: ΔI of every (position, candidate) pair of each root, and its verified contexts."""
    tokenizer = inputs.tokenizer
    out = {"candidates": [], "verified_contexts": [], "status": list(batch["status"])}
    for row, (text, positions, retrieved) in enumerate(
        zip(batch["text"], batch["positions"], batch["retrieved"], strict=True)
    ):
        if not retrieved:
            out["candidates"].append([])
            out["verified_contexts"].append([])
            continue
        baseline = {position["token_index"]: position["entropy"] for position in positions}
        by_candidate: dict[int, list[dict]] = {}
        for hit in retrieved:
            by_candidate.setdefault(hit["corpus_index"], []).append(hit)
        order = list(by_candidate)
        entropies = context_entropy(
            inputs.lm,
            [encode_document(tokenizer, passage) for passage in inputs.corpus[order]["text"]],
            encode_document(tokenizer, text),
            [[hit["token_index"] for hit in by_candidate[i]] for i in order],
            batch_size=settings.verify_batch_size,
            max_length=inputs.lm_window,
        )
        candidates, verified = [], []
        for corpus_index, with_context in zip(order, entropies, strict=True):
            hits = by_candidate[corpus_index]
            gains = delta_i(
                np.array([baseline[hit["token_index"]] for hit in hits]), np.asarray(with_context)
            )
            for hit, entropy, gain in zip(hits, with_context, gains, strict=True):
                candidates.append(
                    {
                        **hit,
                        "entropy_with_context": float(entropy),
                        "delta_i": float(gain),
                        "verified": bool(gain >= settings.epsilon),
                    }
                )
            passed = [
                hit["token_index"] for hit, gain in zip(hits, gains, strict=True) if gain >= settings.epsilon
            ]
            if passed:
                verified.append(
                    {
                        "corpus_index": corpus_index,
                        "corpus_id": hits[0]["corpus_id"],
                        "delta_i": float(max(gains)),
                        "token_indices": passed,
                    }
                )
        verified.sort(key=lambda context: min(context["token_indices"]))
        out["candidates"].append(candidates)
        out["verified_contexts"].append(verified)
        if not verified:
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
                "delta_i": datasets.Value("float32"),
                "verified": datasets.Value("bool"),
            }
        ),
        "verified_contexts": datasets.List(
            {
                "corpus_index": datasets.Value("int64"),
                "corpus_id": datasets.Value("string"),
                "delta_i": datasets.Value("float32"),
                "token_indices": datasets.List(datasets.Value("int32")),
            }
        ),
    },
    drop_reasons=("no_verified_context",),
    function=verify_candidates,
    rows_per_call=8,
)
