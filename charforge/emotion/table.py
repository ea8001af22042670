"""The emotion basis, aliases and VAD directions, loaded from `emotions.toml` shipped in the package.

Kept as data so the mapping can be tuned (or overridden per character) without touching code.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

BASIS: tuple[str, ...] = ("joy", "trust", "fear", "surprise", "sadness", "disgust", "anger", "anticipation")


class VAD(NamedTuple):
    """Valence (unpleasant..pleasant), arousal (calm..excited), dominance (submissive..in control), each in [-1, 1]."""

    valence: float
    arousal: float
    dominance: float


class _Direction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    valence: float = Field(ge=-1.0, le=1.0)
    arousal: float = Field(ge=-1.0, le=1.0)
    dominance: float = Field(ge=-1.0, le=1.0)


class EmotionTable(BaseModel):
    """Validated content of emotions.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    neutral_threshold: float = Field(ge=0.0, le=1.0)
    decimals: int = Field(ge=1, le=12)
    basis: dict[str, _Direction]
    aliases: dict[str, dict[str, float]]

    @model_validator(mode="after")
    def _consistent(self) -> EmotionTable:
        if tuple(self.basis) != BASIS:
            raise ValueError(f"[basis] must list exactly {', '.join(BASIS)} in that order")
        for alias, weights in self.aliases.items():
            if alias in BASIS:
                raise ValueError(f"alias {alias!r} shadows a basis emotion")
            for name, weight in weights.items():
                if name not in BASIS:
                    raise ValueError(f"alias {alias!r} maps to unknown basis emotion {name!r}")
                if not 0.0 <= weight <= 1.0:
                    raise ValueError(f"alias {alias!r} gives {name} the weight {weight}, outside [0, 1]")
        return self

    def direction(self, name: str) -> VAD:
        d = self.basis[name]
        return VAD(d.valence, d.arousal, d.dominance)

    def known_names(self) -> list[str]:
        return [*BASIS, *sorted(self.aliases)]


@lru_cache(maxsize=1)
def emotion_table() -> EmotionTable:
    text = resources.files("charforge.emotion").joinpath("emotions.toml").read_text(encoding="utf-8")
    return EmotionTable.model_validate(tomllib.loads(text))
