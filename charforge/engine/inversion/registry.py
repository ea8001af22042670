"""Inversion methods by name: a new method is one module plus one `register_method` line."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from charforge.engine.inversion.base import InversionMethod
from charforge.errors import InvalidInput

_REGISTRY: dict[str, InversionMethod] = {}


def register_method(method: InversionMethod) -> InversionMethod:
    """Make `method` available under `method.name` (to `invert`, replays, stores and the CLI)."""
    name = getattr(method, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{type(method).__name__} has no name")
    if name in _REGISTRY and type(_REGISTRY[name]) is not type(method):
        raise ValueError(f"inversion method {name!r} is already registered by {type(_REGISTRY[name]).__name__}")
    _REGISTRY[name] = method
    return method


def get_method(name: str) -> InversionMethod:
    if name not in _REGISTRY:
        raise InvalidInput(f"unknown inversion method '{name}' (choose from {', '.join(METHODS)})")
    return _REGISTRY[name]


class _MethodNames(Sequence[str]):
    """The registered names, read live: methods registered after import are included."""

    def __getitem__(self, index):  # type: ignore[override]
        return list(_REGISTRY)[index]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __iter__(self) -> Iterator[str]:
        return iter(list(_REGISTRY))

    def __contains__(self, name: object) -> bool:
        return name in _REGISTRY

    def __repr__(self) -> str:
        return repr(tuple(_REGISTRY))


METHODS: Sequence[str] = _MethodNames()
