"""`EmotionState`: how a character feels, validated once at the edge so everything downstream can trust it."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from charforge.canonical import canonical_hash, canonical_json
from charforge.emotion.table import BASIS, VAD, emotion_table
from charforge.errors import InvalidInput
from charforge.validation import invalid_input

NEUTRAL = "neutral"

_Intensity = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False)


def _intensity(name: str, raw: object) -> float:
    # bool is an int subclass; "joy=True" is almost certainly a mistake, not 1.0.
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError(f"intensity of {name} must be a number in [0, 1], got {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"intensity of {name} must be a number in [0, 1], got {raw!r}") from None
    if math.isnan(value):
        raise ValueError(f"intensity of {name} is NaN; give a number in [0, 1]")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"intensity of {name} must be within [0, 1], got {raw}")
    return value


def _unknown(name: str) -> str:
    known = emotion_table().known_names()
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown emotion {name!r}{hint} (known: {', '.join(BASIS)}, and aliases such as happy, angry, love)"


def resolve_names(values: Mapping[str, object]) -> dict[str, float]:
    """Map basis names and aliases to basis intensities; overlapping names combine by max."""
    table = emotion_table()
    out = dict.fromkeys(BASIS, 0.0)
    for raw_name, raw in values.items():
        if not isinstance(raw_name, str):
            raise ValueError(f"emotion names must be strings, got {raw_name!r}")
        name = raw_name.strip().lower()
        if name in out:
            weights = {name: 1.0}
        elif name in table.aliases:
            weights = table.aliases[name]
        else:
            raise ValueError(_unknown(raw_name))
        value = _intensity(name, raw)
        for basis_name, weight in weights.items():
            out[basis_name] = max(out[basis_name], value * weight)
    return {name: round(v, table.decimals) for name, v in out.items()}


class EmotionState(BaseModel):
    """Intensities in [0, 1] over Plutchik's eight emotions.

    Accepts aliases (`happy`, `angry`, the 28 GoEmotions labels, ...) on input and always stores the
    eight basis values, rounded, so two states that mean the same compare and hash equal. Invalid input
    raises `charforge.errors.InvalidInput` naming the problem.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    joy: float = _Intensity
    trust: float = _Intensity
    fear: float = _Intensity
    surprise: float = _Intensity
    sadness: float = _Intensity
    disgust: float = _Intensity
    anger: float = _Intensity
    anticipation: float = _Intensity

    def __init__(self, /, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise invalid_input(exc) from None

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        if isinstance(data, EmotionState):
            return data.intensities()
        if not isinstance(data, Mapping):
            raise ValueError(f"an emotion state is a mapping of names to intensities, got {type(data).__name__}")
        return resolve_names(data)

    # construction -------------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> EmotionState:
        return cls(**dict(values))

    @classmethod
    def neutral(cls) -> EmotionState:
        return cls()

    @classmethod
    def coerce(
        cls,
        state: EmotionState | Mapping[str, object] | None = None,
        keywords: Mapping[str, object] | None = None,
        *,
        default: EmotionState | None = None,
    ) -> EmotionState:
        """The state a verb was given: a state, a mapping or emotion keywords (`feel(joy=0.8)`), not
        both; with neither, `default` (neutral if None)."""
        if state is not None and keywords:
            raise InvalidInput("give a state or emotion keywords, not both")
        if state is None:
            return default if default is not None and not keywords else cls.from_mapping(keywords or {})
        return state if isinstance(state, EmotionState) else cls.from_mapping(state)

    @classmethod
    def parse_tokens(cls, tokens: Iterable[str]) -> EmotionState:
        """Parse CLI tokens like `joy=0.8 fear=0.2`; each name may appear once."""
        values: dict[str, str] = {}
        for token in tokens:
            name, sep, number = token.partition("=")
            name, number = name.strip(), number.strip()
            if not sep or not name or not number or "=" in number:
                raise InvalidInput(f"malformed emotion {token!r}: expected EMOTION=INTENSITY, e.g. joy=0.8")
            key = name.lower()
            if key in values:
                raise InvalidInput(f"emotion {name!r} is given twice")
            try:
                float(number)
            except ValueError:
                raise InvalidInput(
                    f"malformed emotion {token!r}: {number!r} is not a number (expected e.g. {name}=0.8)"
                ) from None
            values[key] = number
        return cls.from_mapping(values)

    # views --------------------------------------------------------------------------------------

    def intensities(self) -> dict[str, float]:
        """All eight basis intensities, in basis order."""
        return {name: getattr(self, name) for name in BASIS}

    def components(self) -> dict[str, float]:
        """Only the non-zero intensities, strongest first (ties in basis order)."""
        nonzero = [(n, v) for n, v in self.intensities().items() if v > 0.0]
        return dict(sorted(nonzero, key=lambda item: -item[1]))

    @property
    def is_neutral(self) -> bool:
        threshold = emotion_table().neutral_threshold
        return all(v < threshold for v in self.intensities().values())

    @property
    def dominant(self) -> str:
        """The strongest basis emotion, or 'neutral' when every intensity is below the threshold."""
        if self.is_neutral:
            return NEUTRAL
        return max(BASIS, key=lambda n: getattr(self, n))

    def vad(self) -> VAD:
        """Valence/arousal/dominance: the intensity-weighted mean direction, scaled by the peak intensity.

        Scaling by the peak keeps the map continuous (all-zero is exactly neutral, (0, 0, 0)) and lets
        joy=0.4 sit between neutral and joy=1 instead of jumping to joy's full direction.
        """
        table = emotion_table()
        weights = self.intensities()
        total = sum(weights.values())
        if total == 0.0:
            return VAD(0.0, 0.0, 0.0)
        peak = max(weights.values())
        sums = [0.0, 0.0, 0.0]
        for name, w in weights.items():
            for i, component in enumerate(table.direction(name)):
                sums[i] += w * component
        return VAD(*(round(s / total * peak, 6) for s in sums))

    def quantized(self, step: float) -> EmotionState:
        """Snap every intensity to a multiple of `step`, so near-identical states share one cached asset."""
        if not (isinstance(step, (int, float)) and 0.0 < step <= 1.0):
            raise InvalidInput(f"quantisation step must be in (0, 1], got {step!r}")
        return EmotionState(**{n: min(1.0, round(v / step) * step) for n, v in self.intensities().items()})

    def canonical_json(self) -> str:
        return canonical_json(self.intensities())

    def canonical_hash(self) -> str:
        """Stable sha256 of the state: independent of name order, aliases used and float noise."""
        return canonical_hash(self.intensities())

    def __str__(self) -> str:
        parts = [f"{n}={v:g}" for n, v in self.components().items()]
        return " ".join(parts) if parts else NEUTRAL
