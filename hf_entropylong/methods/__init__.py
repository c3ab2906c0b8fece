"""The data recipes a build can make, one module each: the method's name → the stages it runs, in order.

- `entropylong` — the paper's method: entropy → retrieval → verify → units.
- `noverify` — the paper's main ablation: entropy → retrieval → top1 → units (no ΔI test).
- `concat` — random documents concatenated before each root into a full row: random → fill.
- `quest` — documents of the root's keyword groups (Quest) into a full row: keywords → fill.
- `nextlong` — meta-chunks interleaved with hard-negative chunks (NExtLong) into a full row: negatives → interleave.

Every method runs on the same roots, corpus, seed, tokenizer, row length and schema, so their datasets compare
side by side (`hf-entropylong report`). EntropyLong's and NoVerify's units are packed several to a row, each its
own attention span; the three baselines, as their authors build them, give each root one row of exactly
`max_seq_length` tokens that trains as one span (`seq_lengths` says which, and the training collator follows it). To add a method: write `methods/<name>.py` with its stages
(`stages.Stage` records) and a `STAGES` tuple, add it to `METHODS` below, and give its settings group (if any) to
`builder.config.SETTINGS_GROUPS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..settings import setting
from ..stages import Stage
from . import concat, entropylong, nextlong, noverify, quest

METHODS: dict[str, tuple[Stage, ...]] = {
    "entropylong": entropylong.STAGES,
    "noverify": noverify.STAGES,
    "concat": concat.STAGES,
    "quest": quest.STAGES,
    "nextlong": nextlong.STAGES,
}
MethodName = Literal[tuple(METHODS)]


@dataclass
class MethodSettings:
    """Which data recipe the build makes: EntropyLong, its ablation, or a baseline (on identical inputs)."""

    method: MethodName = setting(
        "entropylong",
        help="entropylong (the paper's method), noverify (top-1 retrieved document per position, no ΔI test), "
        "concat (random documents), quest (documents of the root's keyword groups), nextlong (meta-chunks "
        "interleaved with hard-negative chunks); the baselines fill one row per root. See hf_entropylong/methods/.",
    )

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}.")


def stages_of(method: str) -> tuple[Stage, ...]:
    """The stages a build of `method` runs, in order."""
    return METHODS[method]
