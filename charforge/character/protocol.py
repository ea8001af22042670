"""What the verb modules need of a character, as a Protocol.

The handle (`charforge.character.handle.Character`) forwards its verbs to modules such as `feel`, `bgm`
and `identity`; typing those modules against this Protocol instead of the handle keeps every import
arrow pointing one way (handle -> verbs), even for type checkers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from charforge.emotion import EmotionState
from charforge.store.character_store import CharacterStore
from charforge.store.models import EmotionSource
from charforge.store.records import EmotionEntry


class Character(Protocol):
    """A stored character: its definition, its store, its current feeling."""

    @property
    def name(self) -> str: ...

    @property
    def display_name(self) -> str: ...

    @property
    def prompt(self) -> str: ...

    @property
    def negative_prompt(self) -> str: ...

    @property
    def seed(self) -> int: ...

    @property
    def model_ref(self) -> str | None: ...

    @property
    def model_hash(self) -> str | None: ...

    @property
    def settings(self) -> dict[str, Any]: ...

    @property
    def store(self) -> CharacterStore: ...

    def current_state(self) -> EmotionState: ...

    def refresh(self) -> Character: ...

    def to_dict(self) -> dict[str, Any]: ...

    def update(self, **changes: Any) -> Character: ...

    def record_emotion(
        self, state: EmotionState | Mapping[str, float], *, source: EmotionSource | str = ...
    ) -> EmotionEntry: ...
