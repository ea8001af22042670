"""The entry point of `Character.feel`: a state drawn before is served from the store before torch is imported.

`charforge.character.feel` needs torch and the model; importing it only when a state must be drawn keeps a
cached answer to a chat turn or a game event in the milliseconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from charforge.character.cache import FeelResult, cached_picture
from charforge.emotion import EmotionState

if TYPE_CHECKING:
    from charforge.character.protocol import Character


def emote(character: Character, state: EmotionState, *, record: bool = True, progress: bool = False) -> FeelResult:
    """The character's picture for `state`, from the store when drawn before, else rendered (and stored)."""
    hit = cached_picture(character, state)
    if hit is None:
        from charforge.character.feel import feel

        return feel(character, state, record=record, progress=progress)
    if record:
        character.record_emotion(state)
    return hit
