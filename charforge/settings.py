"""A character's `settings`: per-character overrides of the shipped data tables, checked when they
arrive (card import, `create`, `update`), not later when a render first reads them.

Every setting names one table and is validated by that table's own model merged over the shipped
data, so a card that imports is one whose settings every verb accepts. Settings are plain JSON held
in one database row: they are bounded in size and depth so a card cannot blow up the workspace.
Adding a setting is one entry in `TABLES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from charforge.canonical import canonical_json
from charforge.errors import InvalidInput

MAX_SETTINGS_BYTES = 32 * 1024
MAX_DEPTH = 12


def _identity(value: Any) -> None:
    from pydantic import ValidationError

    from charforge.character.identity import IdentityOptions
    from charforge.validation import invalid_input

    if not isinstance(value, Mapping):
        raise InvalidInput(f"settings.identity must be a table, got {type(value).__name__}")
    try:
        IdentityOptions(**value)
    except ValidationError as exc:
        raise invalid_input(exc, "settings.identity") from None


def _expressions(value: Any) -> None:
    from charforge.emotion.conditioning import expression_table

    expression_table(value)


def _music(value: Any) -> None:
    from charforge.audio.mood import mood_table

    mood_table(value)


def _regions(value: Any) -> None:
    from charforge.paths import validate_slug

    if not isinstance(value, Mapping):
        raise InvalidInput("settings.regions must map region names to word lists")
    for name, words in value.items():
        validate_slug(name)
        if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
            raise InvalidInput(f"settings.regions.{name} must be a list of words")


TABLES: dict[str, Callable[[Any], None]] = {
    "identity": _identity,
    "expressions": _expressions,
    "music": _music,
    "regions": _regions,
}


def depth(value: Any) -> int:
    """Nesting depth of plain data (1 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH + 1:
            break
        if isinstance(item, Mapping):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, level + 1) for v in item)
    return deepest


def check_plain(value: Any, what: str) -> None:
    """Bounded plain JSON: at most MAX_DEPTH levels and MAX_SETTINGS_BYTES serialised."""
    if depth(value) > MAX_DEPTH:
        raise InvalidInput(f"{what} is nested more than {MAX_DEPTH} levels deep")
    size = len(canonical_json(value))
    if size > MAX_SETTINGS_BYTES:
        raise InvalidInput(f"{what} is {size} bytes as JSON; the limit is {MAX_SETTINGS_BYTES}")


def validate_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """`settings` if every key names a known table and its value validates against it; else InvalidInput."""
    check_plain(settings, "settings")
    for key, value in settings.items():
        check = TABLES.get(key)
        if check is None:
            raise InvalidInput(f"unknown setting {key!r} (known: {', '.join(sorted(TABLES))})")
        check(value)
    return dict(settings)
