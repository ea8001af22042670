"""Emotion state -> what the picture is conditioned on: expression phrases, their blend and attention weights.

The mapping is data (`expressions.toml`, overridable per character), so tuning how a character shows
joy never touches code. A state becomes a blend of prompts that differ only in the expression slot:
the base prompt (neutral phrase) and one prompt per emotion taking part. Blend weights grow linearly
from the neutral threshold, so intensity and mixture move the picture gradually rather than in jumps,
and a state at the threshold is exactly the base prompt. Past `full_at`, intensity raises the
phrase's cross-attention weight (Prompt-to-Prompt reweight) instead.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from charforge.emotion.state import EmotionState
from charforge.emotion.table import BASIS, emotion_table
from charforge.paths import validate_slug
from charforge.validation import CONTROL_CHARS, table_with_overrides


def _phrase(value: str) -> str:
    value = " ".join(value.split())
    if not value or CONTROL_CHARS.search(value) or len(value) > 200:
        raise ValueError("a phrase is one line of 1 to 200 characters")
    return value


class _Expression(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    phrase: str
    scale: float = Field(default=1.0, gt=0.0, le=1.0)

    @field_validator("phrase")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return _phrase(value)


class _Intensity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    full_at: float = Field(gt=0.0, le=1.0)
    weight_at_full: float = Field(gt=0.0, le=5.0)
    weight_at_max: float = Field(gt=0.0, le=5.0)


class _Edit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    cross_replace: float = Field(ge=0.0, le=1.0)
    self_replace: float = Field(ge=0.0, le=1.0)
    mask_dilation: int = Field(ge=0, le=8)
    region: str
    composite: bool

    @field_validator("region")
    @classmethod
    def _region_name(cls, value: str) -> str:
        return validate_slug(value)


class ExpressionTable(BaseModel):
    """Validated `expressions.toml`, possibly with a character's overrides merged in."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    neutral_phrase: str
    quantization: float = Field(gt=0.0, le=1.0)
    max_mixture: int = Field(ge=1, le=3)
    intensity: _Intensity
    emotions: dict[str, _Expression]
    edit: _Edit

    @field_validator("neutral_phrase")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return _phrase(value)

    @model_validator(mode="after")
    def _every_basis_emotion(self) -> ExpressionTable:
        unknown = sorted(set(self.emotions) - set(BASIS))
        if unknown:
            raise ValueError(f"unknown emotion {unknown[0]!r} in [emotions] (known: {', '.join(BASIS)})")
        missing = [name for name in BASIS if name not in self.emotions]
        if missing:
            raise ValueError(f"[emotions] has no entry for {', '.join(missing)}")
        return self


@lru_cache(maxsize=1)
def _shipped() -> dict[str, Any]:
    text = resources.files("charforge.emotion").joinpath("expressions.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def expression_table(overrides: Mapping[str, Any] | None = None) -> ExpressionTable:
    """The shipped table with `overrides` (a character's `settings["expressions"]`) merged in."""
    return table_with_overrides(ExpressionTable, _shipped(), overrides, "expressions", "expressions.toml")


def swap_phrase(base_prompt: str, neutral_phrase: str, phrase: str) -> str:
    """`base_prompt` with its neutral phrase (last occurrence, whole words) replaced by `phrase`;
    appended after a comma when the prompt has no neutral phrase."""
    matches = list(re.finditer(rf"(?<![\w]){re.escape(neutral_phrase)}(?![\w])", base_prompt, flags=re.IGNORECASE))
    if not matches:
        return f"{base_prompt.rstrip().rstrip(',')}, {phrase}"
    last = matches[-1]
    return base_prompt[: last.start()] + phrase + base_prompt[last.end() :]


@dataclass(frozen=True)
class Term:
    """One expression taking part in a picture: its phrase, the emotions behind it and their weights."""

    phrase: str
    emotions: tuple[str, ...]
    intensity: float  # after each emotion's scale, summed over emotions sharing the phrase, <= 1
    blend: float  # share of this phrase's prompt in the text conditioning
    attention: float  # cross-attention weight of the phrase's tokens
    prompt: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "phrase": self.phrase,
            "emotions": list(self.emotions),
            "intensity": round(self.intensity, 4),
            "blend": round(self.blend, 4),
            "attention": round(self.attention, 4),
            "prompt": self.prompt,
        }


@dataclass(frozen=True)
class Conditioning:
    """What a state becomes: a blend of prompts (neutral + terms) and the expression slot's attention weight."""

    state: EmotionState  # quantised
    base_prompt: str
    neutral_phrase: str
    neutral_blend: float
    terms: tuple[Term, ...]

    @property
    def is_neutral(self) -> bool:
        """Nothing to edit: the base CG is the picture of this state."""
        return not self.terms

    @property
    def dominant(self) -> Term | None:
        return self.terms[0] if self.terms else None

    @property
    def target_prompt(self) -> str:
        """The prompt of the strongest expression (the base prompt when neutral)."""
        return self.terms[0].prompt if self.terms else self.base_prompt

    @property
    def attention_weight(self) -> float:
        """Blend-weighted attention weight of the expression slot."""
        total = sum(t.blend for t in self.terms)
        return 1.0 if total == 0 else sum(t.blend * t.attention for t in self.terms) / total

    def blend(self) -> list[tuple[str, float]]:
        """(prompt, weight) pairs whose text embeddings, summed with these weights, condition the picture."""
        pairs = [(t.prompt, t.blend) for t in self.terms]
        if self.neutral_blend > 0:
            pairs.append((self.base_prompt, self.neutral_blend))
        return pairs

    def describe(self) -> str:
        """One line a person can read: which phrases, how much of each, how strongly attended."""
        if self.is_neutral:
            return f"neutral: the base prompt as is ({self.neutral_phrase!r})"
        parts = [f"{t.blend:.2f} x {t.phrase!r} (attention x{t.attention:.2f})" for t in self.terms]
        if self.neutral_blend > 0:
            parts.append(f"{self.neutral_blend:.2f} x {self.neutral_phrase!r}")
        return " + ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        vad = self.state.vad()
        return {
            "state": self.state.components(),
            "dominant": self.state.dominant,
            "neutral": self.is_neutral,
            "base_prompt": self.base_prompt,
            "neutral_phrase": self.neutral_phrase,
            "neutral_blend": round(self.neutral_blend, 4),
            "terms": [t.to_dict() for t in self.terms],
            "attention_weight": round(self.attention_weight, 4),
            "vad": vad._asdict(),
        }


def _blend_share(intensity: float, threshold: float, full_at: float) -> float:
    if full_at <= threshold:
        return 1.0 if intensity >= threshold else 0.0
    return min(1.0, max(0.0, (intensity - threshold) / (full_at - threshold)))


def _attention(intensity: float, spec: _Intensity) -> float:
    if intensity <= spec.full_at or spec.full_at >= 1.0:
        return spec.weight_at_full
    t = (intensity - spec.full_at) / (1.0 - spec.full_at)
    return spec.weight_at_full + t * (spec.weight_at_max - spec.weight_at_full)


def conditioning(
    state: EmotionState | Mapping[str, float], base_prompt: str, table: ExpressionTable | None = None
) -> Conditioning:
    """The conditioning of `state` (quantised with the table's step) for a character drawn with `base_prompt`."""
    table = table or expression_table()
    state = state if isinstance(state, EmotionState) else EmotionState.from_mapping(state)
    state = state.quantized(table.quantization)
    threshold = emotion_table().neutral_threshold

    by_phrase: dict[str, tuple[list[str], float]] = {}
    for name in BASIS:
        value = getattr(state, name)
        if value <= 0.0:
            continue
        entry = table.emotions[name]
        if entry.phrase.lower() == table.neutral_phrase.lower():
            continue  # an override may draw an emotion with the neutral face
        names, total = by_phrase.get(entry.phrase, ([], 0.0))
        by_phrase[entry.phrase] = ([*names, name], min(1.0, total + value * entry.scale))

    ranked = sorted(by_phrase.items(), key=lambda item: -item[1][1])[: table.max_mixture]
    shares = [(phrase, names, e, _blend_share(e, threshold, table.intensity.full_at)) for phrase, (names, e) in ranked]
    shares = [s for s in shares if s[3] > 0.0]
    total = sum(s[3] for s in shares)
    scale = 1.0 / total if total > 1.0 else 1.0
    terms = tuple(
        Term(
            phrase=phrase,
            emotions=tuple(names),
            intensity=e,
            blend=share * scale,
            attention=_attention(e, table.intensity),
            prompt=swap_phrase(base_prompt, table.neutral_phrase, phrase),
        )
        for phrase, names, e, share in shares
    )
    neutral_blend = max(0.0, 1.0 - sum(t.blend for t in terms))
    return Conditioning(state, base_prompt, table.neutral_phrase, neutral_blend, terms)


__all__ = ["Conditioning", "ExpressionTable", "Term", "conditioning", "expression_table", "swap_phrase"]
