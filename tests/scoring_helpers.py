"""The package's scoring functions called the way the tests (and benchmarks) read them: entropies only, one root
or one document at a time; and the verification stage's input row built from them."""

import numpy as np
import torch

from hf_entropylong.models import encode_documents
from hf_entropylong.stages.context_scores import RootCandidates, roots_context_scores
from hf_entropylong.stages.token_scores import batch_document_scores, document_scores, next_token_scores


def encode_document(tokenizer, text: str) -> list[int]:
    return encode_documents(tokenizer, [text]).ids[0]


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """The definition, in float64: H = −Σ p log p over the last dimension."""
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    return -(log_probs.exp() * log_probs).sum(-1)


def next_token_entropy(model, input_ids, attention_mask=None, chunk_size: int = 1024) -> torch.Tensor:
    return next_token_scores(model, input_ids, attention_mask, chunk_size).entropy


def document_entropy(model, token_ids, max_length=None, chunk_size: int = 1024) -> np.ndarray:
    return document_scores(model, token_ids, max_length, chunk_size).entropy


def batch_document_entropy(
    model, documents, batch_size=8, max_length=None, chunk_size=1024
) -> list[np.ndarray]:
    return [s.entropy for s in batch_document_scores(model, documents, batch_size, max_length, chunk_size)]


def roots_context_entropy(
    model, requests, batch_size=8, max_length=None, root_window=None
) -> list[list[np.ndarray]]:
    scores = roots_context_scores(model, requests, batch_size, max_length, root_window)
    return [[candidate.entropy for candidate in per_root] for per_root in scores]


def context_entropy(
    model, context_ids, root_ids, positions, batch_size=8, max_length=None, root_window=None
) -> list[np.ndarray]:
    """Entropy at `positions[i]` of the root with `context_ids[i]` prepended (one root's request)."""
    request = RootCandidates(root_ids, context_ids, positions)
    return roots_context_entropy(model, [request], batch_size, max_length, root_window)[0]


def verification_row(text: str, scores, indices: list[int], contexts: list[int]) -> dict:
    """One verification-stage row: `text` with positions at `indices` (entropy and target log-probability from the
    entropy stage's `scores`), every corpus row of `contexts` retrieved for every position."""
    return {
        "text": [text],
        "status": ["ok"],
        "positions": [
            [
                {
                    "token_index": t,
                    "entropy": float(scores.entropy[t]),
                    "target_logprob": float(scores.logprob[t]),
                }
                for t in indices
            ]
        ],
        "retrieved": [
            [
                {"token_index": t, "corpus_index": c, "corpus_id": f"doc{c}", "similarity": 0.5}
                for c in contexts
                for t in indices
            ]
        ],
    }
