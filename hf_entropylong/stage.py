"""The contract of a build stage: one record owns its settings, inputs, columns, drop reasons and map function.

A stage is a batched `Dataset.map` function over rows of roots, `function(batch, settings, inputs) -> columns`.
Its `Stage` record says everything the builder needs to run it, cache it and count it:

- `settings`: the dataclass of the stage's own fields. `BuildConfig` inherits every settings dataclass, so YAML
  keys and flags stay flat; the function receives an instance of this one class and nothing else of the config.
- `inputs`: the shared inputs it reads (models, corpus, index, sequence length, seed: names of the builder's
  inputs). The function receives a view that exposes those names alone, so the record cannot under-declare.
- `columns`: the features it adds; `drop_reasons`: the statuses it may give a root (checked on every batch).
- `rows_per_call`: roots per map call (`None`: a whole shard at once); `batch_size_setting`: the setting to lower
  when the stage runs out of device memory (named in the error).

Cache key of a stage = hash(previous stage's key, its settings without the output-neutral fields, the identities
of its inputs). A settings class names its output-neutral fields (batch sizes, devices, where to write) in its
`output_neutral` class variable: they change how a stage runs, never what it writes, and are in no key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any


def setting(default: Any = MISSING, *, help: str, default_factory: Any = MISSING):
    """A settings field with its help text (shown by `--help`)."""
    return field(default=default, default_factory=default_factory, metadata={"help": help})


def require_positive(settings, *names: str) -> None:
    """Raise a ValueError naming the first of the fields `names` of `settings` that is set below 1 (unset is fine)."""
    for name in names:
        value = getattr(settings, name)
        if value is not None and value < 1:
            raise ValueError(f"{name} must be positive, got {value}.")


def is_output_neutral(settings_type: type, name: str) -> bool:
    """Whether field `name` of `settings_type` (or of a settings class it combines) is declared output-neutral."""
    return any(name in vars(group).get("output_neutral", ()) for group in settings_type.__mro__)


def settings_of(config, settings_type: type):
    """The `settings_type` part of a config that inherits it (validated again by its `__post_init__`)."""
    return settings_type(**{f.name: getattr(config, f.name) for f in fields(settings_type)})


def output_settings(settings) -> dict[str, Any]:
    """The fields of a settings instance that can change what a stage writes (the part of its cache key)."""
    return {
        f.name: getattr(settings, f.name)
        for f in fields(settings)
        if not is_output_neutral(type(settings), f.name)
    }


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
