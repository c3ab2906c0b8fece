"""The concat baseline: random → units.

The standard baseline: each root is preceded by `concat_documents` corpus documents drawn at random (seeded by
root), never the root itself or a near-copy of it (`index.exclusion`, at `near_duplicate_threshold`), shuffled
like EntropyLong's contexts by the units stage.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from ..index.exclusion import ExclusionSettings, exclusion
from ..settings import require_positive, setting
from ..stages import Stage
from ..stages.units import UNIT_STAGE
from .common import FIRST_COLUMNS, FIRST_DROP_REASONS, finish_row, start_first_stage


@dataclass
class ConcatSettings:
    """The concat baseline."""

    concat_documents: int = setting(3, help="concat: random corpus documents placed before each root.")

    def __post_init__(self):
        require_positive(self, "concat_documents")


@dataclass
class RandomStageSettings(ConcatSettings, ExclusionSettings):
    """What the random stage reads: the number of documents and the near-copy threshold."""

    def __post_init__(self):
        ConcatSettings.__post_init__(self)
        ExclusionSettings.__post_init__(self)


def random_documents(batch: dict, settings: RandomStageSettings, inputs) -> dict:
    """The random stage: `concat_documents` corpus documents per root, drawn with a per-root seed."""
    out, fits, _ = start_first_stage(batch, inputs)
    corpus_size = len(inputs.corpus)
    for row, (root_id, text, ok) in enumerate(zip(batch["id"], batch["text"], fits, strict=True)):
        rng, documents, excluded, drawn = random.Random(f"{inputs.seed}/{root_id}"), [], Counter(), set()
        attempts = min(corpus_size, 8 * settings.concat_documents) if ok else 0
        while len(documents) < settings.concat_documents and len(drawn) < attempts:
            corpus_row = rng.randrange(corpus_size)
            if corpus_row in drawn:
                continue
            drawn.add(corpus_row)
            corpus_id, corpus_text = (inputs.corpus[corpus_row][name] for name in ("id", "text"))
            reason = exclusion(
                root_id, text, corpus_id, corpus_text, inputs.same_source, settings.near_duplicate_threshold
            )
            if reason:
                excluded[reason] += 1
            else:
                documents.append((corpus_row, corpus_id, float("nan"), []))
        finish_row(out, row, [], documents, excluded)
    return out


RANDOM_STAGE = Stage(
    name="random",
    settings=RandomStageSettings,
    inputs=("tokenizer", "corpus", "max_seq_length", "seed", "same_source"),
    columns=FIRST_COLUMNS,
    drop_reasons=FIRST_DROP_REASONS,
    function=random_documents,
    rows_per_call=64,
)

STAGES = (RANDOM_STAGE, UNIT_STAGE)
