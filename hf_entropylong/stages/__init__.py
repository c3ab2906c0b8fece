"""The build's stages, one module each, and the record every stage (EntropyLong's and the baselines') fills in.

A stage is a batched `Dataset.map` function over rows of roots, `function(batch, settings, inputs) -> columns`.
Its `Stage` record says everything the builder needs to run it, cache it and count it:

- `settings`: the dataclass of the stage's own fields (`hf_entropylong.settings`). `BuildConfig` inherits every
  settings dataclass, so YAML keys and flags stay flat; the function receives an instance of this one class and
  nothing else of the config.
- `inputs`: the shared inputs it reads (models, corpus, index, sequence length, seed: names of
  `builder.inputs.BuildInputs`). The function receives a view that exposes those names alone, so the record cannot
  under-declare.
- `columns`: the features it adds; `drop_reasons`: the statuses it may give a root (checked on every batch).
- `rows_per_call`: roots per map call (`None`: a whole shard at once); `batch_size_setting`: the setting to lower
  when the stage runs out of device memory (named in the error).

EntropyLong's stages: `entropy` (where the model lacks information) → `retrieval` (what might supply it) →
`verify` (what really does) → `units` (verified contexts before their root). The baselines' own stages live with
their method in `hf_entropylong.methods`.

Cache key of a stage = hash(previous stage's key, its settings without the output-neutral fields, the identities
of its inputs, its columns, the package version): `builder.inputs.stage_keys`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stage:
    """One build stage: see the module docstring."""

    name: str
    settings: type
    inputs: tuple[str, ...]
    columns: dict[str, Any]
    drop_reasons: tuple[str, ...]
    function: Callable[[dict, Any, Any], dict]
    rows_per_call: int | None = None
    batch_size_setting: str | None = None


class InputView:
    """The named attributes of an inputs object, and no others."""

    def __init__(self, inputs, names: tuple[str, ...], stage: str):
        self._inputs, self._names, self._stage = inputs, frozenset(names), stage

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._names:
            raise AttributeError(
                f"stage {self._stage!r} reads the input {name!r} without declaring it in its `inputs`"
            )
        return getattr(self._inputs, name)
