"""Named sets of expression labels (what a sprite pack or a batch run draws), and label -> state.

A label is an emotion name or alias that front ends use as a file name or an animation name, so it is
held to a strict spelling (lowercase letters, digits, underscore). Each label becomes the state
`{label: intensity}` through the emotion table's aliases, so "admiration" draws trust at 0.9 x the
intensity, exactly as a chatbot front end sending that label would get.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from charforge.emotion.state import NEUTRAL, EmotionState
from charforge.emotion.table import BASIS
from charforge.errors import InvalidInput

# SillyTavern's expression labels (extension "expressions", DEFAULT_EXPRESSIONS of SillyTavern 1.12,
# without its "talkinghead" mode switch): the 28 GoEmotions classes of its classifier, with neutral.
SILLYTAVERN: tuple[str, ...] = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity",
    "desire", "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear",
    "gratitude", "grief", "joy", "love", "nervousness", "optimism", "pride", "realization", "relief",
    "remorse", "sadness", "surprise", NEUTRAL,
)  # fmt: skip
PLUTCHIK: tuple[str, ...] = (*BASIS, NEUTRAL)

LABEL_SETS: dict[str, tuple[str, ...]] = {"plutchik": PLUTCHIK, "sillytavern": SILLYTAVERN}
_LABEL = re.compile(r"[a-z][a-z0-9_]{0,31}")


def label_set(name: str) -> tuple[str, ...]:
    """The labels of a named set ("plutchik", "sillytavern")."""
    if name not in LABEL_SETS:
        raise InvalidInput(f"unknown label set {name!r} (choose from {', '.join(sorted(LABEL_SETS))})")
    return LABEL_SETS[name]


def check_labels(labels: Iterable[str]) -> tuple[str, ...]:
    """Validated, de-duplicated labels in the given order; each must name an emotion or an alias."""
    out: list[str] = []
    for raw in labels:
        label = raw.strip().lower() if isinstance(raw, str) else raw
        if not isinstance(label, str) or not _LABEL.fullmatch(label):
            raise InvalidInput(f"invalid expression label {raw!r}: use lowercase letters, digits and '_'")
        label_state(label)  # unknown names fail here, with a suggestion
        if label not in out:
            out.append(label)
    if not out:
        raise InvalidInput("no expression labels given")
    return tuple(out)


def parse_labels(text: str) -> tuple[str, ...]:
    """Comma-separated labels, e.g. "joy,sadness,anger"."""
    return check_labels(part for part in text.split(",") if part.strip())


def label_state(label: str, intensity: float = 1.0) -> EmotionState:
    """The state a label stands for at `intensity` (neutral is the all-zero state at any intensity)."""
    return EmotionState.from_mapping({label: intensity})
