"""The concat baseline: random → fill.

The standard baseline of the field: documents drawn at random from the corpus, concatenated to the full sequence
length, one sample per row that trains as one attention span. Tied to the shared roots like every method: each
root's row is [random documents; root], the documents drawn with a per-root seed (never the root itself or a
near-copy of it, `index.exclusion` at `near_duplicate_threshold`) until they fill the row, then joined as plain
text, tokenized once and cut to exactly `max_seq_length` tokens at the start (`methods.common.fill_rows`). A root
whose row cannot be filled (a small corpus) is dropped with the status `too_short`.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

from ..index.exclusion import ExclusionSettings, exclusion
from ..stages import Stage
from .common import (
    FILL_MARGIN,
    FILL_STAGE,
    FIRST_COLUMNS,
    FIRST_DROP_REASONS,
    finish_row,
    start_first_stage,
    token_lengths,
)


@dataclass
class RandomStageSettings(ExclusionSettings):
    """What the random stage reads: the near-copy threshold."""


def random_documents(batch: dict, settings: RandomStageSettings, inputs) -> dict:
    """The random stage: corpus documents drawn with a per-root seed until they fill the root's row."""
    out, fits, offsets = start_first_stage(batch, inputs)
    corpus = inputs.corpus
    for row, (root_id, text, ok) in enumerate(zip(batch["id"], batch["text"], fits, strict=True)):
        rng, documents, excluded, drawn = random.Random(f"{inputs.seed}/{root_id}"), [], Counter(), set()
        budget = math.ceil(FILL_MARGIN * inputs.max_seq_length) - len(offsets[row])
        while ok and budget > 0 and len(drawn) < len(corpus):
            wanted = [rng.randrange(len(corpus)) for _ in range(32)]
            wanted = [r for r in dict.fromkeys(wanted) if r not in drawn]
            drawn.update(wanted)
            found = corpus[wanted]
            lengths = token_lengths(inputs.tokenizer, found["text"])
            for corpus_row, corpus_id, corpus_text, length in zip(
                wanted, found["id"], found["text"], lengths, strict=True
            ):
                reason = exclusion(
                    root_id,
                    text,
                    corpus_id,
                    corpus_text,
                    inputs.same_source,
                    settings.near_duplicate_threshold,
                )
                if reason:
                    excluded[reason] += 1
                elif budget > 0:
                    documents.append((corpus_row, corpus_id, float("nan"), []))
                    budget -= length
        finish_row(out, row, [], documents, excluded)
        if ok and documents and budget > 0:
            out["status"][row] = "too_short"
    return out


RANDOM_STAGE = Stage(
    name="random",
    settings=RandomStageSettings,
    inputs=("tokenizer", "corpus", "max_seq_length", "seed", "same_source"),
    columns=FIRST_COLUMNS,
    drop_reasons=(*FIRST_DROP_REASONS, "too_short"),
    function=random_documents,
    rows_per_call=16,
)

STAGES = (RANDOM_STAGE, FILL_STAGE)
