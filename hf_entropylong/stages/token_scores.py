"""Per-token entropy and log-probability of a causal LM's predictions, computed without materialising the logits.

H_t = −Σ_v p(v | x_<t) log p(v | x_<t) over the full vocabulary: the entropy of the prediction of token t,
read from the logits at t − 1 (so H_0 is undefined and set to NaN). The same log-softmax also gives
log p(x_t | x_<t), the log-probability of the token that actually comes: every function returns both
(`TokenScores`).

Memory: the transformer body runs once and returns the last hidden states `[batch, seq, d]` (final norm
included); the LM head, the model's own logit post-processing and the fp32 log-softmax then run over
`chunk_size` positions at a time, so only one chunk of fp32 logits (`[chunk, vocab]`) is alive at once instead
of `[batch, seq, vocab]` (4 GiB for a single 8K window of Llama-3, whose vocabulary has 128,256 entries).
Verification (`stages.verify`) runs the head only on the hidden states it needs (`head_scores`).

Padding: batches are right-padded. The body runs without the padding mask: under causal attention a real token
never attends to the padding after it, so its hidden state is exactly the unpadded one, and the attention keeps
its mask-free (fastest, O(seq) memory) kernel. Padded positions come out as NaN.

Long documents: a document longer than the window W (`max_length`, default the model's
`max_position_embeddings`) is scored in windows of W tokens that advance by ⌊W/2⌋. The first window scores all
of its positions; each later window scores only the positions past the end of the previous one. Every position
beyond the first window is therefore predicted from at least ⌈W/2⌉ tokens of left context, and every position is
scored exactly once.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from ..models import context_window

_CHECKED_HEADS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _entropy(log_probs: torch.Tensor) -> torch.Tensor:
    return -(log_probs.exp() * log_probs).sum(-1)


def entropy_and_logprob_from_logits(
    logits: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy (nats) of the softmax over the last dimension and the log-probability of `targets`, in fp32.

    Args:
        logits: `[..., vocab]` in any floating dtype.
        targets: `[...]` token ids.

    Returns:
        `([...], [...])` float32: the entropy and `log_softmax(logits)[target]`.
    """
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return _entropy(log_probs), log_probs.gather(-1, targets[..., None].to(log_probs.device)).squeeze(-1)


def _body(model):
    """The transformer body of a causal LM (the module that returns `last_hidden_state`)."""
    body = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
    if body is model:
        body = model.base_model
    if body is model:
        raise TypeError(f"{type(model).__name__} exposes no transformer body (get_decoder() / base_model)")
    return body


def hidden_states(model, input_ids: torch.Tensor) -> torch.Tensor:
    """Last hidden states `[batch, seq, d]` of the body (final norm included), for right-padded `input_ids`."""
    return _body(model)(input_ids=input_ids).last_hidden_state


def _head_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """The LM head plus the logit post-processing some families apply after it in their forward."""
    logits = model.get_output_embeddings()(hidden)
    config = model.config
    if getattr(config, "logits_scaling", None):  # Granite
        logits = logits / config.logits_scaling
    if isinstance(getattr(model, "logit_scale", None), float | int):  # Cohere
        logits = logits * model.logit_scale
    if getattr(config, "final_logit_softcapping", None):  # Gemma 2/3
        cap = config.final_logit_softcapping
        logits = torch.tanh(logits / cap) * cap
    return logits


def lm_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """Logits of the LM for hidden states of its body, identical to what `model(...).logits` gives.

    The first call for a model checks this on a 4-token probe and raises if the model post-processes its
    logits in a way not reproduced here, rather than returning wrong entropies.
    """
    if model not in _CHECKED_HEADS:
        probe = torch.arange(4, device=hidden.device)[None] % model.config.vocab_size
        with torch.inference_mode():
            expected = model(input_ids=probe).logits.float()
            got = _head_logits(model, hidden_states(model, probe)).float()
        if not torch.allclose(got, expected, rtol=1e-2, atol=1e-2):
            raise NotImplementedError(
                f"{type(model).__name__}: the LM head applied to the body's hidden states does not reproduce "
                "the model's logits (unknown logit post-processing)"
            )
        _CHECKED_HEADS[model] = True
    return _head_logits(model, hidden)


def head_scores(
    model, hidden: torch.Tensor, targets: torch.Tensor, chunk_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy of the LM's prediction from each hidden state of `hidden` `[..., d]`, and the log-probability it
    gives `targets` `[...]`, the LM head running on `chunk_size` hidden states at a time.

    Returns:
        `([...], [...])` float32 on the device of `hidden`: the entropy and log p(target) from each hidden state.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if targets.shape != hidden.shape[:-1]:
        raise ValueError(
            f"targets {tuple(targets.shape)} do not match hidden states {tuple(hidden.shape[:-1])}"
        )
    flat, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1).to(hidden.device)
    entropy = torch.empty(flat.shape[0], dtype=torch.float32, device=hidden.device)
    logprob = torch.empty_like(entropy)
    for start in range(0, flat.shape[0], chunk_size):
        chunk = slice(start, start + chunk_size)
        entropy[chunk], logprob[chunk] = entropy_and_logprob_from_logits(
            lm_logits(model, flat[chunk]), flat_targets[chunk]
        )
    return entropy.reshape(hidden.shape[:-1]), logprob.reshape(hidden.shape[:-1])


class TokenScores(NamedTuple):
    """Per-position scores of a document: `entropy[t]` = H of p(· | x_<t), `logprob[t]` = log p(x_t | x_<t)."""

    entropy: np.ndarray | torch.Tensor
    logprob: np.ndarray | torch.Tensor


@torch.inference_mode()
def next_token_scores(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, chunk_size: int = 1024
) -> TokenScores:
    """Entropy of p(x_t | x_<t) and log p(x_t | x_<t) at every position of a batch, from one forward.

    Args:
        model: a transformers causal LM.
        input_ids: `[batch, seq]` token ids, right-padded.
        attention_mask: `[batch, seq]`, 1 for real tokens, 0 for the right padding (which comes out NaN).
        chunk_size: positions per LM-head chunk (across the batch).

    Returns:
        `TokenScores` of `[batch, seq]` float32 CPU tensors: at `[:, t]`, the entropy of the prediction of token t
        and the log-probability it gives token t; NaN at position 0 and at padded positions.
    """
    if attention_mask is not None:
        mask = attention_mask.cpu().bool()
        if mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask {tuple(mask.shape)} does not match input_ids {tuple(input_ids.shape)}"
            )
        if (mask[:, 1:] & ~mask[:, :-1]).any():
            raise ValueError("attention_mask must describe right padding (no real token after a padded one)")
    input_ids = input_ids.to(model.device)
    hidden = hidden_states(model, input_ids)
    entropy = torch.full(input_ids.shape, float("nan"), dtype=torch.float32)
    logprob = entropy.clone()
    # The hidden state at t − 1 predicts token t.
    scored = head_scores(model, hidden[:, :-1], input_ids[:, 1:], chunk_size)
    entropy[:, 1:], logprob[:, 1:] = (values.cpu() for values in scored)
    if attention_mask is not None:
        entropy[~mask] = logprob[~mask] = float("nan")
    return TokenScores(entropy, logprob)


def _window_starts(length: int, window: int) -> list[int]:
    """Start of each window scoring a document of `length` tokens (see the module docstring)."""
    stride = window // 2
    starts = [0]
    while starts[-1] + window < length:
        starts.append(starts[-1] + stride)
    return starts


def document_scores(
    model, token_ids: Sequence[int], max_length: int | None = None, chunk_size: int = 1024
) -> TokenScores:
    """Entropy and log p(x_t | x_<t) at every position of one document.

    Args:
        model: a transformers causal LM.
        token_ids: the document's token ids.
        max_length: the LM window (default: `model.config.max_position_embeddings`). Longer documents are scored
            in half-overlapping windows (see the module docstring).
        chunk_size: positions per LM-head chunk.

    Returns:
        `TokenScores` of float32 `[len(token_ids)]` arrays, NaN at position 0.
    """
    window = context_window(model, max_length)
    ids = torch.tensor([list(token_ids)], dtype=torch.long)
    out = TokenScores(*(np.full(ids.shape[1], np.nan, dtype=np.float32) for _ in TokenScores._fields))
    scored_until = 0
    for start in _window_starts(ids.shape[1], window):
        scored = next_token_scores(model, ids[:, start : start + window], chunk_size=chunk_size)
        length = scored.entropy.shape[1]
        for values, window_values in zip(out, scored, strict=True):
            values[scored_until : start + length] = window_values[0].numpy()[scored_until - start :]
        scored_until = start + length
    return out


def batch_document_scores(
    model,
    documents: Sequence[Sequence[int]],
    batch_size: int = 8,
    max_length: int | None = None,
    chunk_size: int = 1024,
) -> list[TokenScores]:
    """`document_scores` for many documents, in their input order.

    Documents that fit the window are sorted by length and batched `batch_size` at a time with right padding
    (so little is padded); longer ones are scored alone in windows by `document_scores`. An empty document
    gives empty arrays.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    window = context_window(model, max_length)
    empty = np.zeros(0, dtype=np.float32)
    results: list[TokenScores] = [TokenScores(empty, empty)] * len(documents)
    fitting = sorted(
        (i for i, d in enumerate(documents) if 0 < len(d) <= window), key=lambda i: len(documents[i])
    )
    for i, document in enumerate(documents):
        if len(document) > window:
            results[i] = document_scores(model, document, window, chunk_size)
    for start in range(0, len(fitting), batch_size):
        group = fitting[start : start + batch_size]
        ids = torch.zeros(len(group), len(documents[group[-1]]), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(group):
            ids[row, : len(documents[i])] = torch.tensor(list(documents[i]))
            mask[row, : len(documents[i])] = 1
        scored = TokenScores(*(values.numpy() for values in next_token_scores(model, ids, mask, chunk_size)))
        for row, i in enumerate(group):
            results[i] = TokenScores(*(values[row, : len(documents[i])].copy() for values in scored))
    return results
