"""The data recipes a build can make, one module each: the method's name → the stages it runs, in order.

- `entropylong` — the paper's method: entropy → retrieval → verify → units.
- `noverify` — the paper's main ablation: entropy → retrieval → top1 → units (no ΔI test).
- `concat` — random documents before each root: random → units.
- `quest` — documents sharing keywords (Quest): keywords → units.
- `nextlong` — meta-chunks interleaved with hard negatives (NExtLong): negatives → interleave.

Every method runs on the same roots, corpus, seed, tokenizer, packing and schema, so their datasets compare
side by side (`hf-entropylong report`). To add a method: write `methods/<name>.py` with its stages
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
        "concat (random documents), quest (documents sharing keywords), nextlong (meta-chunks interleaved with "
        "hard negatives). See hf_entropylong/methods/.",
    )

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}.")


def stages_of(method: str) -> tuple[Stage, ...]:
    """The stages a build of `method` runs, in order."""
    return METHODS[method]
