"""Per-token entropy of a causal LM, and the high-entropy positions of a document.

H_t = −Σ_v p(v | x_<t) log p(v | x_<t) over the full vocabulary: the entropy of the prediction of token t,
read from the logits at t − 1 (so H_0 is undefined and set to NaN). The transformer body runs once; the LM
head and the log-softmax then run over `chunk_size` positions at a time, so only one chunk of fp32 logits
([batch, chunk, vocab]) is alive at once instead of [batch, seq, vocab].

A document longer than the LM window is scored in windows of the window's length that advance by half a
window: the first window scores its own positions, each later window only its second half, so every position
past the first window is predicted from at least half a window of left context.

High-entropy positions are those with H_t > μ + α·σ, μ and σ taken over the document's finite entropies
(α = 2.0 in the paper).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the softmax over the last dimension, computed in fp32."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return -(log_probs.exp() * log_probs).sum(-1)


def hidden_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Last hidden states of the transformer body (final norm included), without the LM head."""
    body = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
    return body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def head_entropy(model, hidden: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
    """Entropy of the LM head's prediction for each hidden state of `hidden` [..., d], chunk by chunk."""
    head = model.get_output_embeddings()
    flat = hidden.reshape(-1, hidden.shape[-1])
    out = torch.empty(flat.shape[0], dtype=torch.float32, device=hidden.device)
    for start in range(0, flat.shape[0], chunk_size):
        out[start : start + chunk_size] = entropy_from_logits(head(flat[start : start + chunk_size]))
    return out.reshape(hidden.shape[:-1])


@torch.inference_mode()
def next_token_entropy(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, chunk_size: int = 1024
) -> torch.Tensor:
    """Entropy of p(x_t | x_<t) at every position of a batch.

    Args:
        model: a transformers causal LM.
        input_ids: `[batch, seq]` token ids (right-padded when `attention_mask` is given).
        attention_mask: `[batch, seq]`, 1 for real tokens.
        chunk_size: positions per LM-head chunk (across the batch).

    Returns:
        `[batch, seq]` float32 on the CPU; position 0 and padded positions are NaN.
    """
    device = model.device
    input_ids = input_ids.to(device)
    if attention_mask is not None:
        attention_mask = attention_mask.to(device)
    hidden = hidden_states(model, input_ids, attention_mask)
    out = torch.full(input_ids.shape, float("nan"), dtype=torch.float32)
    out[:, 1:] = head_entropy(model, hidden[:, :-1], chunk_size).cpu()
    if attention_mask is not None:
        out[attention_mask.cpu() == 0] = float("nan")
    return out


def window_of(model, max_length: int | None) -> int:
    return int(max_length or model.config.max_position_embeddings)


def document_entropy(
    model, token_ids: Sequence[int], max_length: int | None = None, chunk_size: int = 1024
) -> np.ndarray:
    """Entropy at every position of one document, in half-overlapping windows when it exceeds `max_length`."""
    window = window_of(model, max_length)
    ids = torch.tensor([list(token_ids)], dtype=torch.long)
    if ids.shape[1] <= window:
        return next_token_entropy(model, ids, chunk_size=chunk_size)[0].numpy()
    out = np.full(ids.shape[1], np.nan, dtype=np.float32)
    stride = max(1, window // 2)
    start = 0
    while True:
        scored = next_token_entropy(model, ids[:, start : start + window], chunk_size=chunk_size)[0].numpy()
        keep_from = 0 if start == 0 else window - stride
        out[start + keep_from : start + len(scored)] = scored[keep_from:]
        if start + window >= ids.shape[1]:
            return out
        start += stride


def batch_document_entropy(
    model,
    documents: Sequence[Sequence[int]],
    batch_size: int = 8,
    max_length: int | None = None,
    chunk_size: int = 1024,
) -> list[np.ndarray]:
    """`document_entropy` for many documents: similar lengths batched together with right padding."""
    window = window_of(model, max_length)
    results: list[np.ndarray | None] = [None] * len(documents)
    fitting = sorted(
        (i for i, d in enumerate(documents) if 0 < len(d) <= window), key=lambda i: len(documents[i])
    )
    for i, document in enumerate(documents):
        if len(document) > window:
            results[i] = document_entropy(model, document, window, chunk_size)
        elif not document:
            results[i] = np.zeros(0, dtype=np.float32)
    for start in range(0, len(fitting), batch_size):
        group = fitting[start : start + batch_size]
        longest = len(documents[group[-1]])
        ids = torch.zeros(len(group), longest, dtype=torch.long)
        mask = torch.zeros(len(group), longest, dtype=torch.long)
        for row, i in enumerate(group):
            ids[row, : len(documents[i])] = torch.tensor(list(documents[i]))
            mask[row, : len(documents[i])] = 1
        scored = next_token_entropy(model, ids, mask, chunk_size).numpy()
        for row, i in enumerate(group):
            results[i] = scored[row, : len(documents[i])]
    return results


def high_entropy_positions(entropy: np.ndarray, alpha: float = 2.0) -> np.ndarray:
    """Indices t with H_t > mean + alpha·std over the document's finite entropies (empty with fewer than 2)."""
    entropy = np.asarray(entropy, dtype=np.float64)
    finite = np.isfinite(entropy)
    if finite.sum() < 2:
        return np.zeros(0, dtype=np.int64)
    values = entropy[finite]
    threshold = values.mean() + alpha * values.std()
    return np.flatnonzero(finite & (np.where(finite, entropy, -np.inf) > threshold))
