"""Which portraits the data holds: random identities and faces from a seed, and the held-out split.

Training, the judges, the classifier and every evaluation draw their portraits here, so a seed names
the same list everywhere and no held-out identity can reach training by another path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from charforge.recipes.portrait_mini.face import EMOTIONS
from charforge.recipes.portrait_mini.render import (
    ACCESSORIES,
    BACKGROUND_COLOURS,
    CALM_BELOW,
    EYE_COLOURS,
    HAIR_COLOURS,
    HAIR_STYLES,
    OUTFIT_COLOURS,
    SKIN_TONES,
    Portrait,
)


def is_held_out(p: Portrait) -> bool:
    """About one identity in eight never appears in training, so evaluation prompts are unseen combinations.

    Defined on (hair colour, outfit, background, hair style) so every single attribute value and every
    pair with an expression is still seen in training; only the full combination is new.
    """
    h = list(HAIR_COLOURS).index(p.hair_colour)
    o = list(OUTFIT_COLOURS).index(p.outfit)
    b = list(BACKGROUND_COLOURS).index(p.background)
    s = HAIR_STYLES.index(p.hair_style)
    return (h * 3 + o * 5 + b * 7 + s * 11) % 8 == 0


# shares of calm, single-emotion, two- and three-emotion faces in the data
FACE_MIX: tuple[float, float, float, float] = (0.06, 0.52, 0.32, 0.10)
MIXTURE_MIN = 0.2  # each emotion of a mixture is at least this strong, so each part can be seen


def random_state(
    rng: np.random.Generator,
    *,
    min_intensity: float = CALM_BELOW,
    mix: Sequence[float] = FACE_MIX,
    emphasis: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """A calm face, one emotion (intensity uniform in [min_intensity, 1]) or a mixture of two or three.

    `mix` gives the four kinds' shares (as `FACE_MIX`); a focused fine-tune shifts them towards mixtures.
    `emphasis` weighs how often an emotion is picked (default 1 each), so a fine-tune can show more of
    the faces a model draws worst; without it the draws are the ones every shipped model was trained on.
    """
    kind = int(rng.choice(4, p=np.asarray(mix, dtype=float) / sum(mix)))
    if kind == 0:
        return {}
    if emphasis:
        weights = np.array([float(emphasis.get(e, 1.0)) for e in EMOTIONS])
        picked = rng.choice(len(EMOTIONS), size=kind, replace=False, p=weights / weights.sum())
    else:
        picked = rng.permutation(len(EMOTIONS))[:kind]
    names = [EMOTIONS[k] for k in picked]
    low = min_intensity if kind == 1 else max(min_intensity, MIXTURE_MIN)
    return {e: round(float(rng.uniform(low, 1.0)), 3) for e in names}


def random_portrait(
    rng: np.random.Generator,
    *,
    min_intensity: float = CALM_BELOW,
    mix: Sequence[float] = FACE_MIX,
    emphasis: Mapping[str, float] | None = None,
) -> Portrait:
    """Uniform over identity attributes; the face from `random_state`."""

    def pick(options) -> str:
        options = list(options)
        return options[int(rng.integers(len(options)))]

    base = Portrait(
        hair_colour=pick(HAIR_COLOURS),
        hair_style=pick(HAIR_STYLES),
        eye_colour=pick(EYE_COLOURS),
        skin=pick(SKIN_TONES),
        outfit=pick(OUTFIT_COLOURS),
        background=pick(BACKGROUND_COLOURS),
        accessory=pick(ACCESSORIES),
        expression="neutral",
        intensity=0.0,
    )
    return base.with_state(random_state(rng, min_intensity=min_intensity, mix=mix, emphasis=emphasis))


def sample_portraits(
    seed: int,
    count: int,
    *,
    held_out: bool | None = False,
    min_intensity: float = CALM_BELOW,
    mix: Sequence[float] = FACE_MIX,
    emphasis: Mapping[str, float] | None = None,
) -> Iterator[Portrait]:
    """`count` portraits from `seed`; held_out=False -> training combos only, True -> held-out only, None -> any."""
    rng = np.random.default_rng(seed)
    made = 0
    while made < count:
        p = random_portrait(rng, min_intensity=min_intensity, mix=mix, emphasis=emphasis)
        if held_out is None or is_held_out(p) == held_out:
            made += 1
            yield p
