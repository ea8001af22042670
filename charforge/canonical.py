"""Canonical JSON: one byte string per value, so equal states, parameters and identities hash equally.

Cache keys (an asset is found again by the hash of what it depicts) are only as good as this
serialisation: key order, float noise (0.8 vs 0.80000001), -0.0 and 50 vs 50.0 must not change the hash.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from enum import Enum
from pathlib import PurePath
from typing import Any

from charforge.errors import InvalidInput

FLOAT_DECIMALS = 6


MAX_DEPTH = 64


def _normalise(value: Any, where: str, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Enum):
        return _normalise(value.value, where, depth)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{where} is {value}; only finite numbers can be hashed")
        rounded = round(value, FLOAT_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0
        return int(rounded) if rounded.is_integer() else rounded
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"{where} has a non-string key {key!r}")
            out[key] = _normalise(item, f"{where}.{key}", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_normalise(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted(_normalise(item, where, depth + 1) for item in value)
    if isinstance(value, PurePath):
        return value.as_posix()
    if hasattr(value, "model_dump"):  # pydantic models
        return _normalise(value.model_dump(mode="json"), where, depth)
    raise InvalidInput(f"{where} has a value of type {type(value).__name__} that cannot be hashed")


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, floats rounded to 6 decimals, integral floats written as ints."""
    return json.dumps(_normalise(value, "value"), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical_hash(value: Any) -> str:
    """sha256 (hex) of `canonical_json(value)`."""
    return hashlib.sha256(canonical_json(value).encode("ascii")).hexdigest()
