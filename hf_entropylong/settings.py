"""Settings groups: dataclasses whose fields are YAML keys and flags, each with its help text.

Every settings group (the build's, per stage and method, and the run's) declares its fields with `setting`, checks
them in `__post_init__` (`require_positive` for counts and sizes, `require_non_negative` for the rest), and names the fields that change how work runs
but never what it writes in an `output_neutral` class variable (batch sizes, devices, where to write): those are
in no cache key. `settings_of` cuts one group out of a config that inherits many; `output_settings` is the part of
a group that belongs in a cache key.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, field, fields
from typing import Any


def setting(default: Any = MISSING, *, help: str, default_factory: Any = MISSING):
    """A settings field with its help text (shown by `--help`)."""
    return field(default=default, default_factory=default_factory, metadata={"help": help})


def require_positive(settings, *names: str, flag_prefix: str = "") -> None:
    """Raise a ValueError naming the first of the fields `names` of `settings` that is set below 1 (unset is fine).

    `flag_prefix` is put before the name in the message (e.g. "--" where the fields are command-line options).
    """
    for name in names:
        value = getattr(settings, name)
        if value is not None and (value < 1 or (isinstance(value, float) and not math.isfinite(value))):
            raise ValueError(f"{flag_prefix}{name} must be positive, got {value}.")


def require_non_negative(settings, *names: str) -> None:
    """Raise a ValueError naming the first of the fields `names` of `settings` that is negative, NaN or infinite."""
    for name in names:
        value = getattr(settings, name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be >= 0 (and finite), got {value}.")


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
