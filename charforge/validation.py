"""Turning pydantic's validation errors into the one-line `InvalidInput` every front end shows."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from charforge.errors import InvalidInput

E = TypeVar("E", bound=Enum)

# Control characters: user text (prompts, names, phrases) must be one printable line.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def invalid_input(exc: ValidationError, what: str | None = None) -> InvalidInput:
    """The first problem of `exc` as one line, prefixed by the field it concerns and `what` it belongs to."""
    err = exc.errors()[0]
    msg = str(err.get("msg", exc)).removeprefix("Value error, ")
    loc = ".".join(str(part) for part in err.get("loc", ()))
    if loc and loc not in msg:
        msg = f"{loc}: {msg}"
    extra = len(exc.errors()) - 1
    if extra:
        msg += f" (and {extra} more problem{'s' if extra > 1 else ''})"
    return InvalidInput(f"{what}: {msg}" if what else msg)


def parse_enum(enum_type: type[E], value: object, what: str) -> E:
    """`enum_type(value)`, or InvalidInput listing the allowed values."""
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum_type)
        raise InvalidInput(f"unknown {what} {value!r} (expected one of: {allowed})") from None


def merge_tables(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` merged in recursively (tables merge, any other value replaces)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge_tables(out[key], value)
        else:
            out[key] = value
    return out


Table = TypeVar("Table", bound=BaseModel)


def table_with_overrides(model: type[Table], shipped: dict[str, Any], overrides: Mapping[str, Any] | None,
                         setting: str, shipped_name: str) -> Table:
    """A shipped data table with a character's `settings[setting]` merged in, validated as one clear error
    naming the setting (or the shipped file, whose fault it then is)."""
    if overrides is not None and not isinstance(overrides, Mapping):
        raise InvalidInput(f"settings.{setting} must be a table, got {type(overrides).__name__}")
    try:
        return model.model_validate(merge_tables(shipped, overrides or {}))
    except ValidationError as exc:
        raise invalid_input(exc, setting if overrides else f"shipped {shipped_name}") from None
