"""`Character.feel` in two steps: the cache by key first (no torch), the engine only for a new state.

A module of its own because the drawing module imports the cache's keys: the cache module cannot
import it back without an import circle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from charforge.character.cache import FeelResult, cached_picture
from charforge.emotion import EmotionState

if TYPE_CHECKING:
    from charforge.character.handle import Character


def feel(
    character: Character,
    state: EmotionState | Mapping[str, float] | None = None,
    *,
    record: bool = True,
    progress: bool = False,
    **intensities: float,
) -> FeelResult:
    """A state drawn before is answered from its key (SQLite and the weights' hash) without importing
    the engine; any other is drawn by `charforge.character.feel.feel`. `record` as there."""
    wanted = EmotionState.coerce(state, intensities)
    hit = cached_picture(character, wanted)
    if hit is None:
        from charforge.character.feel import feel as draw

        return draw(character, wanted, record=record, progress=progress)
    if record:
        character.record_emotion(wanted)
    return hit
