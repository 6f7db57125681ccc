"""Declaring documented config fields: every field has a default, a type and one line of help.

Components own their config dataclasses (e.g. `AugmentConfig` next to the augmenter) and
declare fields with `option`; `ssps.config` assembles them into one tree, loads YAML onto it
and validates types, `choices` and the bounds `minimum` / `maximum` (inclusive).
"""

from __future__ import annotations

import copy
from dataclasses import field, is_dataclass
from typing import Any


def option(
    default: Any,
    help: str,
    choices: tuple[Any, ...] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
) -> Any:
    """A dataclass field with a default (lists, dicts and nested config sections are copied
    per instance), a help line and, for numbers, optional inclusive bounds."""
    metadata = {"help": help, "choices": choices, "minimum": minimum, "maximum": maximum}
    if isinstance(default, (list, dict)) or is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)
