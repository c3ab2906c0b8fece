"""Entropy-reduction verification: does prepending a candidate context make the root predictable?

For a candidate C retrieved for positions P of root D, the model reads `C + D[:p]` and we take the entropy of
its prediction of D[p] for every p in P, then ΔI = (H_p(D) − H_p([C; D])) / H_p(D); C is kept when ΔI ≥ ε.

Only what is needed is computed: each distinct candidate runs once per root (one forward serves every position
it was retrieved for); the sequence stops at the last position needed; the LM head runs only on the hidden
states that predict the verified positions, not on the whole sequence; candidates are batched by length.

Windows: positions where C plus the root prefix fit the LM window W share one sequence. Beyond that, each
position gets its own sequence in which the context keeps its last max(W − p, W/2) tokens (the end nearest
the root) and the root prefix the tokens just before p, so a context never takes more than half of a window
the root needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .entropy import head_entropy, hidden_states, window_of


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
        positions: for each candidate, the root positions (indices into `root_ids`, ≥ 0) to verify.
        batch_size: sequences per forward.
        max_length: the LM window (default: `model.config.max_position_embeddings`).

    Returns:
        For each candidate, float32 entropies aligned with its `positions`.
    """
    window = window_of(model, max_length)
    items = []  # (candidate, input ids, {position: row})
    for candidate, (context, wanted) in enumerate(zip(context_ids, positions, strict=True)):
        for ids, rows in _plan(context, root_ids, wanted, window):
            items.append((candidate, ids, rows))
    found: list[dict[int, float]] = [{} for _ in context_ids]
    items.sort(key=lambda item: len(item[1]))
    for start in range(0, len(items), batch_size):
        group = items[start : start + batch_size]
        longest = len(group[-1][1])
        ids = torch.zeros(len(group), longest, dtype=torch.long)
        mask = torch.zeros(len(group), longest, dtype=torch.long)
        for row, (_, item_ids, _) in enumerate(group):
            ids[row, : len(item_ids)] = torch.tensor(item_ids)
            mask[row, : len(item_ids)] = 1
        hidden = hidden_states(model, ids.to(model.device), mask.to(model.device))
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
    return [np.array([found[i][p] for p in wanted], dtype=np.float32) for i, wanted in enumerate(positions)]


def delta_i(baseline, with_context):
    """Relative entropy reduction ΔI = (H − H′) / H, elementwise; 0 where H is 0."""
    baseline = np.asarray(baseline, dtype=np.float64)
    with_context = np.asarray(with_context, dtype=np.float64)
    safe = np.where(baseline > 0, baseline, 1.0)
    return np.where(baseline > 0, (baseline - with_context) / safe, 0.0)
