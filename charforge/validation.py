"""Turning pydantic's validation errors into the one-line `InvalidInput` every front end shows."""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from pydantic import ValidationError

from charforge.errors import InvalidInput

E = TypeVar("E", bound=Enum)


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
