"""The entropy stage: the high-entropy positions of each root, where the model lacks information.

Each root is scored by the LM (`token_scores.batch_document_scores`: the entropy H_t of the prediction of every
token and the log-probability of the actual one). High-entropy positions are those with H_t > μ + α·σ, μ and σ
taken over the root's finite entropies (α = 2.0 in the paper).

The stage (`ENTROPY_STAGE`, `score_roots`) scores every root whose encoding fits the sequence length, leaves
special tokens and the first `min_left_context` text tokens out of the statistics, and gives each high-entropy
position its query (the `window_words` words on each side of the token: `retrieval.query_window`) and the
log-probability the model gives its actual token (`target_logprob`, read by verification's
`entropy_and_target` criterion). It also records the root's entropy histogram (`entropy_histogram`: counts of the
same finite entropies that give μ and σ, in the bins of `ENTROPY_HISTOGRAM_EDGES`), so the distribution of a
build's entropies can be audited without rescoring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import datasets
import numpy as np

from ..models import encode_documents
from ..settings import require_non_negative, require_positive, setting
from . import Stage
from .retrieval import query_window
from .token_scores import batch_document_scores

ENTROPY_HISTOGRAM_EDGES = np.linspace(0.0, 12.0, 49)
"""Bin edges (nats) of a root's `entropy_histogram`: 48 bins of 0.25 nats over [0, 12]. The last bin also counts
the entropies above 12 (possible for vocabularies over e^12 ≈ 163K entries); entropies are never negative."""


def entropy_histogram(entropy: np.ndarray) -> list[int]:
    """Counts of the finite values of `entropy` in the bins of `ENTROPY_HISTOGRAM_EDGES` (the last one open above)."""
    values = np.asarray(entropy, dtype=np.float64)
    values = values[np.isfinite(values)]
    clipped = np.clip(values, ENTROPY_HISTOGRAM_EDGES[0], ENTROPY_HISTOGRAM_EDGES[-1])
    return np.histogram(clipped, bins=ENTROPY_HISTOGRAM_EDGES)[0].astype(np.int32).tolist()


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
        require_non_negative(self, "alpha", "min_left_context")
        require_positive(
            self, "max_positions_per_root", "window_words", "entropy_batch_size", "logits_chunk_size"
        )


def score_roots(batch: dict, settings: EntropySettings, inputs) -> dict:
    """The entropy stage: per-root entropy statistics, high-entropy positions with their queries, a status."""
    documents, offsets_of = encode_documents(inputs.tokenizer, batch["text"])
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
    for text, ids, spans, ok in zip(batch["text"], documents, offsets_of, fits, strict=True):
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
