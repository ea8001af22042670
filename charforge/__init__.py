"""charforge: keep a character's CG and BGM in step with how it feels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from charforge.version import __version__

__all__ = ["Character", "EmotionState", "Forge", "__version__"]

if TYPE_CHECKING:
    from charforge.character.handle import Character
    from charforge.emotion import EmotionState
    from charforge.forge import Forge

# Resolved on first use, so `import charforge.engine` does not pay for SQLAlchemy and pydantic.
_LAZY = {"Forge": "charforge.forge", "Character": "charforge.character.handle", "EmotionState": "charforge.emotion"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'charforge' has no attribute {name!r}")
