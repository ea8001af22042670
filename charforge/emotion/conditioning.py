"""Emotion state -> what the picture is conditioned on: expression phrases, their attention weights and edit strengths.

The mapping is data (`expressions.toml`, overridable per character), so tuning how a character shows
joy never touches code. A state becomes a composed expression: the base prompt with its neutral phrase
replaced by every emotion taking part, each as "<intensity word> <phrase>", joined in the fixed basis
order ("very frowning angrily and slightly grimacing disgustedly"). Text embeddings of different
prompts are never averaged: a model reads an average of "smiling" and "frowning" as something else
entirely (a smile with blush, in charforge-mini). With a model calibrated over edit strengths (see
`calibration.py`) the state is drawn *composed*: one prompt per emotion, each edit's change scaled by
the strength the calibration measured for the requested intensity and the changes added up, so
intensity is continuous and a mixture's weights are each emotion's own. Without a calibration the one
composed prompt is drawn at full strength.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from charforge.emotion.calibration import Calibration
from charforge.emotion.state import EmotionState
from charforge.emotion.table import BASIS, emotion_table
from charforge.paths import validate_slug
from charforge.validation import CONTROL_CHARS, table_with_overrides

# face parts a mixture blends separately: brows and eyes above `edit.part_split`, the mouth below
PARTS = ("upper", "lower")

# tables shipped for model families: charforge-mini's caption words, and plain English for SD checkpoints
FAMILIES = {"mini": "expressions.toml", "sd": "expressions_sd.toml"}


def _phrase(value: str) -> str:
    value = " ".join(value.split())
    if not value or CONTROL_CHARS.search(value) or len(value) > 200:
        raise ValueError("a phrase is one line of 1 to 200 characters")
    return value


def _checked_map(value: dict[str, float], known: tuple[str, ...], what: str, valid, message: str) -> dict[str, float]:
    """`value` if its keys are all `known` and `valid` holds for every number; else one error naming the first fault."""
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValueError(f"unknown {what.format(unknown[0])} (known: {', '.join(known)})")
    if not all(valid(v) for v in value.values()):
        raise ValueError(message)
    return value


class _Expression(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    phrase: str
    scale: float = Field(default=1.0, gt=0.0, le=1.0)
    # how much the emotion shows in each face part ("upper": brows and eyes, "lower": mouth), 0..1
    parts: dict[str, float] = Field(default_factory=dict)
    # emotions this one is drawn away from, each with the fraction of its change that is subtracted
    # (composable diffusion's negation: a model that draws trust half as joy gets trust minus some joy)
    unlike: dict[str, float] = Field(default_factory=dict)

    @field_validator("unlike")
    @classmethod
    def _known_emotions(cls, value: dict[str, float]) -> dict[str, float]:
        return _checked_map(value, BASIS, "emotion {!r} in unlike", lambda v: 0.0 < v <= 1.0,
                            "an unlike fraction is a number in (0, 1]")  # fmt: skip

    @field_validator("parts")
    @classmethod
    def _known_parts(cls, value: dict[str, float]) -> dict[str, float]:
        return _checked_map(value, PARTS, "face part {!r}", lambda v: 0.0 <= v <= 1.0,
                            "how much an emotion shows in a part is a number in [0, 1]")  # fmt: skip

    @field_validator("phrase")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return _phrase(value)


class _Word(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    word: str
    upto: float = Field(gt=0.0, le=1.0)

    @field_validator("word")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return _phrase(value)


class _Attention(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    default: float = Field(gt=0.0, le=5.0)


class _Strength(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    calibrate: list[float] = Field(min_length=1)  # the edit strengths a calibration measures

    @field_validator("calibrate")
    @classmethod
    def _in_range(cls, value: list[float]) -> list[float]:
        if any(not 0.0 < s <= 3.0 for s in value):
            raise ValueError("edit strengths must be in (0, 3]")
        return sorted(set(value))


class _Edit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    part_split: float = Field(default=0.55, gt=0.0, lt=1.0)  # where "upper" ends, as a fraction of the face's height
    part_sharpness: float = Field(default=4.0, ge=0.0, le=16.0)  # exponent of the per-part blend of a mixture
    compound_share: float = Field(default=0.0, ge=0.0, le=1.0)  # a mixture's share drawn by its one composed prompt
    cross_replace: float = Field(ge=0.0, le=1.0)
    self_replace: float = Field(ge=0.0, le=1.0)
    mask_dilation: int = Field(ge=0, le=8)
    mask_edge: float = Field(default=1.0, gt=0.0, le=1.0)  # share of its change the d-th dilation ring keeps: edge**d
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
    joiner: str
    words: list[_Word] = Field(min_length=1)
    attention: _Attention
    strength: _Strength
    emotions: dict[str, _Expression]
    edit: _Edit

    def word_for(self, intensity: float) -> str:
        """The intensity word of the band `intensity` falls in (the table's own, uncalibrated reading)."""
        for entry in self.words:
            if intensity <= entry.upto + 1e-9:
                return entry.word
        return self.words[-1].word

    @field_validator("neutral_phrase")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return _phrase(value)

    @model_validator(mode="after")
    def _every_basis_emotion(self) -> ExpressionTable:
        bounds = [w.upto for w in self.words]
        if bounds != sorted(bounds) or bounds[-1] < 1.0:
            raise ValueError("[[words]] must go from the weakest to the strongest, the last up to 1.0")
        unknown = sorted(set(self.emotions) - set(BASIS))
        if unknown:
            raise ValueError(f"unknown emotion {unknown[0]!r} in [emotions] (known: {', '.join(BASIS)})")
        missing = [name for name in BASIS if name not in self.emotions]
        if missing:
            raise ValueError(f"[emotions] has no entry for {', '.join(missing)}")
        return self


@lru_cache(maxsize=4)
def _shipped(family: str = "mini") -> dict[str, Any]:
    text = resources.files("charforge.emotion").joinpath(FAMILIES[family]).read_text(encoding="utf-8")
    return tomllib.loads(text)


def expression_table(overrides: Mapping[str, Any] | None = None, family: str = "mini") -> ExpressionTable:
    """The shipped table of a model `family` ("mini" or "sd") with `overrides` (a character's
    `settings["expressions"]`) merged in."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r} (known: {', '.join(FAMILIES)})")
    return table_with_overrides(ExpressionTable, _shipped(family), overrides, "expressions", FAMILIES[family])


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
    """One expression taking part in a picture: its words in the prompt and their attention weight."""

    phrase: str  # the table's phrase of the emotion(s), e.g. "frowning angrily"
    emotions: tuple[str, ...]
    intensity: float  # after each emotion's scale, summed over emotions sharing the phrase, <= 1
    word: str  # intensity word, e.g. "very"
    attention: float  # cross-attention weight of the term's words
    strength: float = 1.0  # edit strength of the term (charforge.engine.edit_strength)
    unlike: tuple[tuple[str, float], ...] = ()  # (words drawn away from, fraction of the term's strength)

    @property
    def words(self) -> str:
        """What the term adds to the prompt: "<word> <phrase>"."""
        return f"{self.word} {self.phrase}"

    def to_dict(self) -> dict[str, Any]:
        drawn_away = {"unlike": [[w, round(f, 4)] for w, f in self.unlike]} if self.unlike else {}
        return {
            "phrase": self.phrase,
            "emotions": list(self.emotions),
            "intensity": round(self.intensity, 4),
            "word": self.word,
            "attention": round(self.attention, 4),
            "strength": round(self.strength, 4),
            **drawn_away,  # only when there is any: the cache keys of every other state stay as they were
        }


@dataclass(frozen=True)
class Branch:
    """One prompt an edit draws with: its strength, the attention weights of its words and, in a
    mixture, the share of its change each face part takes (absent parts: all of it)."""

    prompt: str
    strength: float
    weights: dict[str, float]
    parts: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Conditioning:
    """What a state becomes: one target prompt, and the attention weight of each term's words in it."""

    state: EmotionState  # quantised
    base_prompt: str
    neutral_phrase: str
    terms: tuple[Term, ...]  # strongest first
    target_prompt: str  # the base prompt with the composed expression (the base prompt when neutral)
    calibrated: bool
    joiner: str = "and"
    composed: bool = False  # drawn as one edit per term, composed (`branches`), not as the one target prompt
    part_shares: tuple[dict[str, float], ...] = ()  # per term, the share of each face part it draws
    compound_share: float = 0.0  # in a composed mixture, the share of the change drawn by the one composed prompt

    @property
    def is_neutral(self) -> bool:
        """Nothing to edit: the base CG is the picture of this state."""
        return not self.terms

    @property
    def dominant(self) -> Term | None:
        return self.terms[0] if self.terms else None

    @property
    def expression(self) -> str:
        """The composed expression slot ("looking calm" when neutral)."""
        return self.neutral_phrase if self.is_neutral else _compose(self.terms, self.joiner)

    def token_weights(self) -> dict[str, float]:
        """Words of the target prompt -> cross-attention weight (Prompt-to-Prompt reweight)."""
        return {t.words: t.attention for t in self.terms}

    def branches(self) -> tuple[Branch, ...]:
        """The prompts an edit draws this state with: the one target prompt at full strength, or, when
        `composed`, one prompt per term (the base prompt showing only that term) at the term's strength,
        whose changes the edit adds up (`charforge.engine.edit_strength`).

        A composed mixture may also draw `compound_share` of its change with the one composed prompt
        (at the strongest term's strength), the per-term prompts the rest: the composed prompt is how a
        model trained on mixture captions draws both feelings as one face, the per-term prompts carry
        each emotion's own strength. A term's `unlike` words follow as branches of negative strength,
        in the same face parts as the term: its change minus a fraction of theirs.
        """
        if not self.composed:
            return (Branch(self.target_prompt, 1.0, self.token_weights()),)
        shares = self.part_shares or tuple({} for _ in self.terms)
        compound = self.compound_share if len(self.terms) > 1 else 0.0
        per_term = tuple(
            Branch(
                swap_phrase(self.base_prompt, self.neutral_phrase, t.words),
                (1.0 - compound) * t.strength,
                {t.words: t.attention},
                p,
            )
            for t, p in zip(self.terms, shares)
        )
        contrasts = tuple(
            Branch(swap_phrase(self.base_prompt, self.neutral_phrase, words), -fraction * t.strength, {}, p)
            for t, p in zip(self.terms, shares)
            for words, fraction in t.unlike
        )
        if compound <= 0.0:
            return (*per_term, *contrasts)
        strongest = max(t.strength for t in self.terms)
        whole = Branch(self.target_prompt, compound * strongest, self.token_weights())
        return (whole, *per_term, *contrasts) if compound < 1.0 else (whole, *contrasts)

    def describe(self) -> str:
        """One line a person can read: the composed expression and each term's attention weight (and strength)."""
        if self.is_neutral:
            return f"neutral: the base prompt as is ({self.neutral_phrase!r})"
        if self.composed:
            parts = [f"{t.words!r} (strength {t.strength:.2f}, attention x{t.attention:.2f})" for t in self.terms]
        else:
            parts = [f"{t.words!r} (attention x{t.attention:.2f})" for t in self.terms]
        how = "calibrated" if self.calibrated else "uncalibrated"
        return f"{' + '.join(parts)} [{how}]"

    def to_dict(self) -> dict[str, Any]:
        vad = self.state.vad()
        return {
            "state": self.state.components(),
            "dominant": self.state.dominant,
            "neutral": self.is_neutral,
            "base_prompt": self.base_prompt,
            "neutral_phrase": self.neutral_phrase,
            "target_prompt": self.target_prompt,
            "terms": [t.to_dict() for t in self.terms],
            "calibrated": self.calibrated,
            "composed": self.composed,
            "branches": [
                {"prompt": b.prompt, "strength": round(b.strength, 4), "parts": _rounded(b.parts)}
                for b in self.branches()
            ],
            "vad": vad._asdict(),
        }


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in values.items()}


def _compose(terms: tuple[Term, ...], joiner: str) -> str:
    """Terms in the fixed basis order (not by strength), so states with the same emotions align word for word."""
    ordered = sorted(terms, key=lambda t: min(BASIS.index(e) for e in t.emotions))
    return f" {joiner} ".join(t.words for t in ordered)


def conditioning(
    state: EmotionState | Mapping[str, float],
    base_prompt: str,
    table: ExpressionTable | None = None,
    calibration: Calibration | None = None,
) -> Conditioning:
    """The conditioning of `state` (quantised with the table's step) for a character drawn with `base_prompt`.

    With a `calibration`, each term's intensity word, attention weight and edit strength come from
    the model's measured curve of its (first) emotion; without, from the table's bands and default
    weight at full strength. A calibration measured over edit strengths draws the state composed, one
    edit per term, so a mixture's weights are each emotion's own measured strength.
    """
    table = table or expression_table()
    state = state if isinstance(state, EmotionState) else EmotionState.from_mapping(state)
    state = state.quantized(table.quantization)
    threshold = emotion_table().neutral_threshold

    by_phrase: dict[str, tuple[list[str], float]] = {}
    for name in BASIS:
        value = getattr(state, name)
        if value < threshold or value <= 0.0:
            continue
        entry = table.emotions[name]
        if entry.phrase.lower() == table.neutral_phrase.lower():
            continue  # an override may draw an emotion with the neutral face
        names, total = by_phrase.get(entry.phrase, ([], 0.0))
        by_phrase[entry.phrase] = ([*names, name], min(1.0, total + value * entry.scale))

    asked = {name for names, _ in by_phrase.values() for name in names}
    ranked = sorted(by_phrase.items(), key=lambda item: -item[1][1])[: table.max_mixture]
    terms = []
    used_calibration = False
    for phrase, (names, e) in ranked:
        setting = calibration.setting(names[0], e) if calibration is not None else None
        used_calibration |= setting is not None
        word, attention, strength = setting or (table.word_for(e), table.attention.default, 1.0)
        unlike = unlike_terms(table, names[0], word, asked)  # never drawn away from what the state asks for
        terms.append(Term(phrase, tuple(names), e, word, attention, strength, unlike))
    terms_t = tuple(terms)
    target = swap_phrase(base_prompt, table.neutral_phrase, _compose(terms_t, table.joiner)) if terms_t else base_prompt
    composed = calibration is not None and used_calibration and calibration.by_strength
    shares = part_shares(terms_t, table) if composed and len(terms_t) > 1 else ()
    return Conditioning(
        state, base_prompt, table.neutral_phrase, terms_t, target, used_calibration, table.joiner, composed, shares,
        table.edit.compound_share,
    )


def unlike_terms(
    table: ExpressionTable, emotion: str, word: str, asked: set[str] | frozenset[str] = frozenset()
) -> tuple[tuple[str, float], ...]:
    """(words, fraction) of each emotion `emotion` is drawn away from (`unlike`), said with `word`,
    leaving out those in `asked`; a calibration measures the emotion with them, as it is drawn."""
    return tuple(
        (f"{word} {table.emotions[other].phrase}", fraction)
        for other, fraction in table.emotions[emotion].unlike.items()
        if other not in asked
    )


def part_shares(terms: tuple[Term, ...], table: ExpressionTable) -> tuple[dict[str, float], ...]:
    """Per term, the share of its change each face part takes in a mixture.

    A part goes fully to the emotion that shows most there and to the others in proportion to how much
    they show there, (shows / most)^k (k = `edit.part_sharpness`), so anger with disgust leans to angry
    brows over a disgusted mouth rather than two half-faces cancelling each other. Intensity is already
    each term's strength, so it does not count twice here (weighting parts by intensity too hid the
    weaker emotion). The shipped k was chosen on held-out calibration characters read by the
    calibration judge; the model card lists the variants measured.
    """
    k = table.edit.part_sharpness
    out: list[dict[str, float]] = [{} for _ in terms]
    for part in PARTS:
        shows = [max(table.emotions[e].parts.get(part, 1.0) for e in t.emotions) for t in terms]
        most = max(shows)
        for i, value in enumerate(shows):
            out[i][part] = (value / most) ** k if most > 0 else 1.0
    return tuple(out)
