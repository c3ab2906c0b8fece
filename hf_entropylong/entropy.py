"""Per-token entropy of a causal LM, and the high-entropy positions of a document.

H_t = −Σ_v p(v | x_<t) log p(v | x_<t) over the full vocabulary: the entropy of the prediction of token t,
read from the logits at t − 1 (so H_0 is undefined and set to NaN). The same log-softmax also gives
log p(x_t | x_<t), the log-probability of the token that actually comes (`*_scores` functions return both).

Memory: the transformer body runs once and returns the last hidden states `[batch, seq, d]` (final norm
included); the LM head, the model's own logit post-processing and the fp32 log-softmax then run over
`chunk_size` positions at a time, so only one chunk of fp32 logits (`[chunk, vocab]`) is alive at once instead
of `[batch, seq, vocab]` (4 GiB for a single 8K window of Llama-3, whose vocabulary has 128,256 entries).

Padding: batches are right-padded. The body runs without the padding mask: under causal attention a real token
never attends to the padding after it, so its hidden state is exactly the unpadded one, and the attention keeps
its mask-free (fastest, O(seq) memory) kernel. Padded positions come out as NaN.

Long documents: a document longer than the window W (`max_length`, default the model's
`max_position_embeddings`) is scored in windows of W tokens that advance by ⌊W/2⌋. The first window scores all
of its positions; each later window scores only the positions past the end of the previous one. Every position
beyond the first window is therefore predicted from at least ⌈W/2⌉ tokens of left context, and every position is
scored exactly once.

High-entropy positions are those with H_t > μ + α·σ, μ and σ taken over the document's finite entropies
(α = 2.0 in the paper).

The build's first stage (`ENTROPY_STAGE`, `score_roots`) scores every root whose encoding fits the sequence
length, leaves special tokens and the first `min_left_context` text tokens out of the statistics, and gives
each high-entropy position its query (the `window_words` words on each side of the token) and the log-probability
the model gives its actual token (`target_logprob`, read by verification's `entropy_and_target` criterion). It also
records the
root's entropy histogram (`entropy_histogram`: counts of the same finite entropies that give μ and σ, in the bins
of `ENTROPY_HISTOGRAM_EDGES`), so the distribution of a build's entropies can be audited without rescoring.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import datasets
import numpy as np
import torch

from .models import context_window
from .retrieval import query_window
from .stage import Stage, require_positive, setting

_CHECKED_HEADS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

ENTROPY_HISTOGRAM_EDGES = np.linspace(0.0, 12.0, 49)
"""Bin edges (nats) of a root's `entropy_histogram`: 48 bins of 0.25 nats over [0, 12]. The last bin also counts
the entropies above 12 (possible for vocabularies over e^12 ≈ 163K entries); entropies are never negative."""


def entropy_histogram(entropy: np.ndarray) -> list[int]:
    """Counts of the finite values of `entropy` in the bins of `ENTROPY_HISTOGRAM_EDGES` (the last one open above)."""
    values = np.asarray(entropy, dtype=np.float64)
    values = values[np.isfinite(values)]
    clipped = np.clip(values, ENTROPY_HISTOGRAM_EDGES[0], ENTROPY_HISTOGRAM_EDGES[-1])
    return np.histogram(clipped, bins=ENTROPY_HISTOGRAM_EDGES)[0].astype(np.int32).tolist()


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the softmax over the last dimension, computed in fp32.

    Args:
        logits: `[..., vocab]` in any floating dtype.

    Returns:
        `[...]` float32.
    """
    return _entropy(torch.log_softmax(logits.float(), dim=-1))


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
def next_token_entropy(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, chunk_size: int = 1024
) -> torch.Tensor:
    """Entropy of p(x_t | x_<t) at every position of a batch: `next_token_scores(...).entropy`, `[batch, seq]`
    float32 on the CPU, NaN at position 0 and at padded positions."""
    return next_token_scores(model, input_ids, attention_mask, chunk_size).entropy


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


def document_entropy(
    model, token_ids: Sequence[int], max_length: int | None = None, chunk_size: int = 1024
) -> np.ndarray:
    """Entropy at every position of one document: `document_scores(...).entropy`, float32, NaN at position 0."""
    return document_scores(model, token_ids, max_length, chunk_size).entropy


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


def batch_document_entropy(
    model,
    documents: Sequence[Sequence[int]],
    batch_size: int = 8,
    max_length: int | None = None,
    chunk_size: int = 1024,
) -> list[np.ndarray]:
    """`document_entropy` for many documents, in their input order (see `batch_document_scores`)."""
    return [
        scores.entropy
        for scores in batch_document_scores(model, documents, batch_size, max_length, chunk_size)
    ]


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


def high_entropy_positions(entropy: np.ndarray, alpha: float = 2.0) -> np.ndarray:
    """Indices t with H_t > μ + α·σ, μ and σ over the document's finite entropies.

    Args:
        entropy: per-position entropies of one document (NaN where undefined or excluded).
        alpha: the threshold in standard deviations (2.0 in the paper).

    Returns:
        int64 indices in increasing order; empty when the document has fewer than 2 finite entropies.
    """
    entropy = np.asarray(entropy, dtype=np.float64)
    finite = np.isfinite(entropy)
    if finite.sum() < 2:
        return np.zeros(0, dtype=np.int64)
    values = entropy[finite]
    if values.min() == values.max():  # constant: nothing stands out (and no rounding may pick everything)
        return np.zeros(0, dtype=np.int64)
    threshold = values.mean() + alpha * values.std()
    return np.flatnonzero(finite & (np.where(finite, entropy, -np.inf) > threshold)).astype(np.int64)


@dataclass
class EntropySettings:
    """Which positions of a root count as high-entropy, and their queries."""

    output_neutral: ClassVar[tuple[str, ...]] = ("entropy_batch_size", "logits_chunk_size")

    alpha: float = setting(2.0, help="High entropy: H_t > mean + alpha * std over the root (the paper: 2.0).")
    min_left_context: int = setting(
        4,
        help="Skip the root's first N text tokens: predicted from almost nothing, their entropy is high in every "
        "document and any prepended text lowers it (0 = the paper's plain rule).",
    )
    max_positions_per_root: int | None = setting(
        None, help="Keep only this many highest-entropy positions per root; all of them when unset."
    )
    window_words: int = setting(16, help="Query: the words on each side of the position (the paper: 16).")
    entropy_batch_size: int = setting(8, help="Roots per LM forward pass.")
    logits_chunk_size: int = setting(
        1024, help="Positions per LM-head chunk (bounds the fp32 logits in memory)."
    )

    def __post_init__(self):
        if self.alpha < 0:
            raise ValueError(
                f"alpha must be >= 0 (a negative one marks almost every token), got {self.alpha}."
            )
        if self.min_left_context < 0:
            raise ValueError(f"min_left_context must be >= 0, got {self.min_left_context}.")
        require_positive(
            self, "max_positions_per_root", "window_words", "entropy_batch_size", "logits_chunk_size"
        )


def score_roots(batch: dict, settings: EntropySettings, inputs) -> dict:
    """The entropy stage: per-root entropy statistics, high-entropy positions with their queries, a status."""
    tokenizer = inputs.tokenizer
    encodings = tokenizer(batch["text"], return_offsets_mapping=True)
    documents = [ids + [tokenizer.eos_token_id] for ids in encodings["input_ids"]]
    fits = [len(ids) <= inputs.max_seq_length for ids in documents]
    scored = iter(
        batch_document_scores(
            inputs.lm,
            [ids for ids, ok in zip(documents, fits, strict=True) if ok],
            batch_size=settings.entropy_batch_size,
            max_length=inputs.lm_window,
            chunk_size=settings.logits_chunk_size,
        )
        if any(fits)
        else []
    )
    out = {
        "num_tokens": [],
        "entropy_mean": [],
        "entropy_std": [],
        "entropy_histogram": [],
        "positions": [],
        "status": [],
    }
    for text, ids, offsets, ok in zip(
        batch["text"], documents, encodings["offset_mapping"], fits, strict=True
    ):
        out["num_tokens"].append(len(ids))
        if not ok:
            out["entropy_mean"].append(None)
            out["entropy_std"].append(None)
            out["entropy_histogram"].append([])
            out["positions"].append([])
            out["status"].append("root_too_long")
            continue
        entropy, logprob = next(scored)
        entropy = entropy.astype(np.float64)
        # Only text tokens count: special tokens (BOS, the closing EOS) have empty character spans. The first
        # `min_left_context` text tokens are left out too: any context "explains" a document's opening.
        spans = list(offsets) + [(0, 0)]
        special = np.array([start >= end for start, end in spans])
        entropy[special] = np.nan
        entropy[np.flatnonzero(~special)[: settings.min_left_context]] = np.nan
        picked = high_entropy_positions(entropy, alpha=settings.alpha)
        if settings.max_positions_per_root is not None:
            picked = sorted(picked, key=lambda t: -entropy[t])[: settings.max_positions_per_root]
        positions = []
        for t in sorted(int(t) for t in picked):
            start, end = spans[t]
            positions.append(
                {
                    "token_index": t,
                    "char_start": int(start),
                    "char_end": int(end),
                    "token": text[start:end],
                    "entropy": float(entropy[t]),
                    "target_logprob": float(logprob[t]),
                    "query": query_window(text, start, end, settings.window_words),
                }
            )
        finite = np.isfinite(entropy).any()
        out["entropy_mean"].append(float(np.nanmean(entropy)) if finite else None)
        out["entropy_std"].append(float(np.nanstd(entropy)) if finite else None)
        out["entropy_histogram"].append(entropy_histogram(entropy))
        out["positions"].append(positions)
        out["status"].append("ok" if positions else "no_high_entropy_position")
    return out


_INT, _STR = datasets.Value("int32"), datasets.Value("string")
ENTROPY_STAGE = Stage(
    name="entropy",
    settings=EntropySettings,
    inputs=("tokenizer", "lm", "lm_window", "max_seq_length"),
    columns={
        "num_tokens": datasets.Value("int64"),
        "entropy_mean": datasets.Value("float32"),
        "entropy_std": datasets.Value("float32"),
        "entropy_histogram": datasets.List(datasets.Value("int32")),
        "positions": datasets.List(
            {
                "token_index": _INT,
                "char_start": _INT,
                "char_end": _INT,
                "token": _STR,
                "entropy": datasets.Value("float32"),
                "target_logprob": datasets.Value("float32"),
                "query": _STR,
            }
        ),
        "status": _STR,
    },
    drop_reasons=("root_too_long", "no_high_entropy_position"),
    function=score_roots,
    batch_size_setting="entropy_batch_size",
)
