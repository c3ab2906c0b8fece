"""Entropy-reduction verification: does prepending a candidate context make the root predictable?

For a candidate C retrieved for positions P of root D, the model reads `C + D[:p]` and we take the entropy of
its prediction of D[p] for every p in P (`stages.context_scores`: each distinct candidate once per root, one
sequence C + D[:max P], the LM head only at the verified positions), then ΔI = (H_p(D) − H_p([C; D])) / H_p(D);
C is kept when ΔI ≥ ε.

Criterion (`verify_criterion`). `entropy`, the paper's rule: a (position, candidate) pair is kept when ΔI ≥ ε.
`entropy_and_target`, an ablation beyond the paper: kept when ΔI ≥ ε and the context also raises the probability
of the token that actually comes, log p(D[p] | C + D[:p]) > log p(D[p] | D[:p]). Entropy falls whenever the model
becomes sure, right or wrong: a context full of look-alike names can make it confident of the wrong one, and the
stricter rule rejects such pairs. Both log-probabilities come from the forwards that give the entropies (the
entropy stage's `target_logprob`, and the same gathered rows here), so the rule costs no extra LM pass; every
candidate records `target_logprob_with_context` whichever rule decides (`is_kept`).

Local root window (`verify_root_window` = w, opt-in, not the paper's method): position p is verified from
C + D[max(0, p − w):p] instead of C + D[:p]. ΔI still compares with the entropy given the whole root: a candidate
must explain what the far root would have explained. A shorter prefix also raises the entropy a candidate can
lower, so as a decision it accepts pairs that the paper's test rejects.

Verification screen (`verify_screen` = w, opt-in): a cascade that decides exactly as the paper but forwards fewer
tokens. Every (root, candidate) is first scored through the local root window w (about |C| + w tokens per cluster
of positions instead of |C| + max P); its screen ΔI is taken against the whole-root entropy, as above. Only the
candidates with a position at screen ΔI ≥ `verify_screen_epsilon` (below ε) are then verified exactly, with the
very sequences the exact verification plans for them, at all their positions: their ΔI and decisions are the
exact ones (bit-identical when each forward holds one sequence; batched, equal up to the float rounding of the
batch's shapes, as the exact verification itself). A candidate screened out keeps no position: the only possible
difference from the paper's method is a positive the screen dropped (`benchmarks/verify_screen_bench.py`
measures that recall and the tokens). A candidate whose screen would cost more than half its exact sequences
(short roots, positions within w of the root's start) skips the screen and is verified exactly at once.
`stages.screen` plans the screen's sequences (and, with `verify_screen_context`, cuts the candidate).

The build's verification stage (`VERIFY_STAGE`, `verify_candidates`) groups each root's retrieved hits by
document, verifies every distinct document once, records every (position, document) pair tried with its ΔI,
and keeps a document as a verified context (with its best ΔI and the positions it passed) when any pair passed.
Schema: every pair tried is a `candidates` entry, `kept` when it passed, with `screen_delta_i` (NaN without a
screen) and, for a pair whose candidate the screen dropped, NaN in place of the exact ΔI and entropy; every document
kept is a `contexts` entry with `verified` true (a baseline's placed documents have it false:
`hf_entropylong.methods`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import datasets
import numpy as np

from ..models import context_window, encode_documents
from ..settings import require_positive, setting
from . import Stage
from .context_scores import RootCandidates, roots_context_scores
from .retrieval import RETRIEVED
from .screen import screen_entropies, worth_screening
from .token_scores import TokenScores

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
    verify_screen: int | None = setting(
        None,
        help="Screen every (root, candidate) through this many root tokens before each position first, and verify "
        "exactly (the paper's test, unchanged) only the candidates whose screen ΔI reaches verify_screen_epsilon: "
        "fewer LM tokens on long roots, at the risk of a positive the screen drops (BENCHMARKS.md measures it); "
        "every candidate is verified exactly when unset.",
    )
    verify_screen_context: int | None = setting(
        128,
        help="The screen reads only this many tokens of each candidate at a position: the span sharing the most of "
        "the root's rarer tokens around it (the passage nearest the query; read only with verify_screen; null: the "
        "whole candidate). 128 with verify_screen 64 kept every exact positive measured (BENCHMARKS.md).",
    )
    verify_screen_epsilon: float = setting(
        0.3,
        help="The screen's ΔI threshold, above 0 and at most epsilon (read only with verify_screen; the exact "
        "positives measured reached at least 0.41 through the screen: BENCHMARKS.md).",
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
        require_positive(
            self, "verify_root_window", "verify_screen", "verify_screen_context", "verify_batch_size"
        )
        screen_epsilon = self.verify_screen_epsilon
        if not (math.isfinite(screen_epsilon) and 0 < screen_epsilon <= 1):
            raise ValueError(f"verify_screen_epsilon must be in (0, 1], got {screen_epsilon}.")
        if self.verify_screen is not None and screen_epsilon > self.epsilon:
            raise ValueError(
                f"verify_screen_epsilon must be at most epsilon ({self.epsilon}) when verify_screen is set, got "
                f"{screen_epsilon}: lower it, or the screen drops pairs the exact test would keep."
            )
        if self.verify_screen is not None and self.verify_root_window is not None:
            raise ValueError(
                "verify_screen and verify_root_window cannot both be set: the screen chooses the candidates that "
                "the whole root prefix verifies; unset one of them."
            )


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


def _select(request: RootCandidates, chosen: Sequence[bool]) -> RootCandidates:
    picked = [i for i, keep in enumerate(chosen) if keep]
    return RootCandidates(
        request.root_ids, [request.context_ids[i] for i in picked], [request.positions[i] for i in picked]
    )


def _spread(scores: list, chosen: Sequence[bool]) -> list:
    """`scores` of the chosen candidates back in place, None for the others."""
    found = iter(scores)
    return [next(found) if keep else None for keep in chosen]


def cascade_scores(
    model,
    requests: Sequence[RootCandidates],
    baselines: Sequence[Sequence[np.ndarray]],
    settings: VerifySettings,
    max_length: int | None = None,
) -> tuple[list[list[TokenScores | None]], list[list[np.ndarray | None]]]:
    """Scores of the candidates of `requests` as `settings` verifies them: all exactly (or through
    `verify_root_window`), or through the screen first (`verify_screen`, see the module docstring).

    Args:
        model: a transformers causal LM.
        requests: per root, its ids, its candidates' ids and their positions (`roots_context_scores`).
        baselines: per root and candidate, the entropy at each of its positions with the root alone.
        settings: the verification settings.
        max_length: the LM window (default: `model.config.max_position_embeddings`).

    Returns:
        Per root and candidate: its exact `TokenScores` (None for a candidate the screen dropped), and its screen ΔI
        at each position (None where it was not screened).
    """

    def run(chosen: Sequence[RootCandidates], root_window: int | None = None) -> list[list[TokenScores]]:
        return roots_context_scores(model, chosen, settings.verify_batch_size, max_length, root_window)

    if settings.verify_screen is None:
        return run(requests, settings.verify_root_window), [[None] * len(r.context_ids) for r in requests]
    window = context_window(model, max_length)
    screened = [
        worth_screening(request, window, settings.verify_screen, settings.verify_screen_context)
        for request in requests
    ]
    screen_scores = screen_entropies(
        model,
        [_select(r, chosen) for r, chosen in zip(requests, screened, strict=True)],
        settings.verify_screen,
        settings.verify_screen_context,
        settings.verify_batch_size,
        max_length,
    )
    screen_gains, to_verify = [], []
    for scores, chosen, baseline in zip(screen_scores, screened, baselines, strict=True):
        gains = [
            None if found is None else delta_i(alone, found)
            for found, alone in zip(_spread(scores, chosen), baseline, strict=True)
        ]
        screen_gains.append(gains)
        to_verify.append([g is None or bool((g >= settings.verify_screen_epsilon).any()) for g in gains])
    exact = run([_select(r, chosen) for r, chosen in zip(requests, to_verify, strict=True)])
    return [_spread(s, chosen) for s, chosen in zip(exact, to_verify, strict=True)], screen_gains


def _candidate_record(hit: dict, exact: tuple | None, screen_gain: float, keep: bool) -> dict:
    """One (position, candidate) entry of the `candidates` column; `exact` is (entropy, log p, ΔI) when run."""
    entropy, logprob, gain = exact if exact is not None else (math.nan, math.nan, math.nan)
    return {
        **hit,
        "entropy_with_context": float(entropy),
        "target_logprob_with_context": float(logprob),
        "delta_i": float(gain),
        "screen_delta_i": float(screen_gain),
        "kept": bool(keep),
    }


def verify_candidates(batch: dict, settings: VerifySettings, inputs) -> dict:
    """The verification stage: ΔI of every (position, candidate) pair of each root, and its verified contexts."""
    tokenizer = inputs.tokenizer
    out = {"candidates": [], "contexts": [], "status": list(batch["status"])}
    grouped, requests, baselines = [], [], []
    for text, retrieved, positions in zip(batch["text"], batch["retrieved"], batch["positions"], strict=True):
        by_candidate: dict[int, list[dict]] = {}
        for hit in retrieved:
            by_candidate.setdefault(hit["corpus_index"], []).append(hit)
        alone = {p["token_index"]: (p["entropy"], p["target_logprob"]) for p in positions}
        grouped.append(
            [
                (
                    index,
                    hits,
                    np.array([alone[h["token_index"]] for h in hits], dtype=np.float64).reshape(-1, 2),
                )
                for index, hits in by_candidate.items()
            ]
        )
        if by_candidate:
            requests.append(
                RootCandidates(
                    encode_documents(tokenizer, [text]).ids[0],
                    encode_documents(tokenizer, inputs.corpus[list(by_candidate)]["text"]).ids,
                    [[hit["token_index"] for hit in hits] for hits in by_candidate.values()],
                )
            )
            baselines.append([baseline[:, 0] for _, _, baseline in grouped[-1]])
    exact, screen = cascade_scores(inputs.lm, requests, baselines, settings, inputs.lm_window)
    found = iter(zip(exact, screen, strict=True))
    for row, candidate_hits in enumerate(grouped):
        candidates, verified = [], []
        exact_scores, screen_gains = next(found) if candidate_hits else ([], [])
        for (corpus_index, hits, alone), scores, screen_gain in zip(
            candidate_hits, exact_scores, screen_gains, strict=True
        ):
            screen_gain = np.full(len(hits), np.nan) if screen_gain is None else screen_gain
            if scores is None:  # dropped by the screen
                kept = np.zeros(len(hits), dtype=bool)
                rows = [None] * len(hits)
            else:
                gains = delta_i(alone[:, 0], scores.entropy)
                kept = is_kept(gains, scores.logprob - alone[:, 1], settings)
                rows = list(zip(scores.entropy, scores.logprob, gains, strict=True))
            candidates += [
                _candidate_record(*entry) for entry in zip(hits, rows, screen_gain, kept, strict=True)
            ]
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
        if candidate_hits and not verified:
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
                "screen_delta_i": datasets.Value("float32"),
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
