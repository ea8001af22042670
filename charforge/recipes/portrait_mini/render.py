"""Procedural character portraits: the training data of charforge-mini and the ground truth of its evaluation.

Every portrait is a pure function of its `Portrait` attributes (which are a pure function of a seed),
so the dataset needs no storage and the masks are exact: the renderer draws a label map with the same
shapes as the colour image. The face sits at the same place and size in every portrait, because
identity-preserving edits (inversion + Prompt-to-Prompt with a local blend on the face) rely on it.
Expressions are drawn large and bold: at 64x64 a subtle mouth is invisible to a small model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

from charforge.errors import InvalidInput
from charforge.recipes.portrait_mini.face import CANVAS, EMOTIONS, HEAD_CENTER, HEAD_RADII, draw_face, face_of

# --- attribute space -------------------------------------------------------------------------------
# Words are the caption words; colours are RGB. Order is part of the data contract (class indices).

HAIR_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 38, 38),
    "blue": (36, 86, 226),
    "green": (34, 160, 60),
    "blonde": (246, 214, 96),
    "black": (28, 28, 34),
    "white": (238, 238, 242),
    "pink": (250, 116, 186),
    "purple": (130, 54, 196),
}
HAIR_STYLES: tuple[str, ...] = ("long", "short", "spiky")
EYE_COLOURS: dict[str, tuple[int, int, int]] = {
    "blue": (40, 110, 235),
    "green": (30, 170, 70),
    "brown": (110, 62, 24),
    "red": (210, 30, 40),
    "purple": (140, 60, 210),
}
SKIN_TONES: dict[str, tuple[int, int, int]] = {
    "fair": (255, 224, 200),
    "tan": (222, 170, 120),
    "dark": (140, 90, 58),
}
OUTFIT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (196, 30, 44),
    "blue": (30, 70, 200),
    "green": (30, 140, 56),
    "yellow": (240, 200, 30),
    "black": (30, 30, 30),
    "white": (245, 245, 245),
    "purple": (120, 40, 170),
}
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "pink": (255, 196, 220),
    "blue": (170, 206, 255),
    "yellow": (255, 240, 160),
    "green": (186, 236, 180),
    "gray": (150, 150, 156),
    "orange": (255, 184, 120),
}
ACCESSORIES: tuple[str, ...] = ("none", "glasses", "hat")

# Each basis emotion's phrase (two words). The expression slot ends the caption: "looking calm" for a
# calm face, else every emotion present as "<intensity word> <phrase>", joined by "and", always in
# the fixed basis order (`EMOTIONS`) whatever their strengths, so two states with the same emotions
# differ only in their intensity words, word for word (a Prompt-to-Prompt replace aligns).
EXPRESSIONS: dict[str, str] = {
    "neutral": "looking calm",
    "joy": "smiling happily",
    "sadness": "crying sadly",
    "anger": "frowning angrily",
    "surprise": "gasping surprised",
    "fear": "trembling fearfully",
    "disgust": "grimacing disgustedly",
    "trust": "gazing trustingly",
    "anticipation": "waiting eagerly",
}
# intensity word of each band (upper bound inclusive); below `CALM_BELOW` an emotion is not drawn
INTENSITY_WORDS: tuple[tuple[float, str], ...] = (
    (0.2, "faintly"),
    (0.4, "slightly"),
    (0.6, "moderately"),
    (0.8, "very"),
    (1.0, "extremely"),
)
CALM_BELOW = 0.05
JOINER = "and"

MASK_NAMES: tuple[str, ...] = ("background", "hair", "face", "neck", "outfit", "accessory")
_LABEL = {name: i for i, name in enumerate(MASK_NAMES)}

_HAT = (70, 48, 96)


def intensity_word(intensity: float) -> str:
    """The caption word of an intensity's band (faintly .. extremely)."""
    for top, word in INTENSITY_WORDS:
        if intensity <= top + 1e-9:
            return word
    raise InvalidInput(f"intensity must be in [0, 1], got {intensity}")


def band_centre(word: str) -> float:
    """The middle of the band an intensity word names."""
    low = 0.0
    for top, name in INTENSITY_WORDS:
        if name == word:
            return (low + top) / 2
        low = top
    raise InvalidInput(f"unknown intensity word {word!r}")


def expression_phrase(state: dict[str, float]) -> str:
    """The caption's expression slot for {emotion: intensity} (see `EXPRESSIONS`)."""
    present = [e for e in EMOTIONS if state.get(e, 0.0) >= CALM_BELOW]
    if not present:
        return EXPRESSIONS["neutral"]
    return f" {JOINER} ".join(f"{intensity_word(state[e])} {EXPRESSIONS[e]}" for e in present)


@dataclass(frozen=True)
class Portrait:
    """The full description of one portrait; `caption()` renders it into the prompt the model learns.

    The face is `expression` at `intensity`, mixed with the emotions of `blend` ((emotion, intensity)
    pairs) when there are any.
    """

    hair_colour: str
    hair_style: str
    eye_colour: str
    skin: str
    outfit: str
    background: str
    accessory: str
    expression: str
    intensity: float
    blend: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        checks = (
            ("hair_colour", self.hair_colour, HAIR_COLOURS),
            ("hair_style", self.hair_style, HAIR_STYLES),
            ("eye_colour", self.eye_colour, EYE_COLOURS),
            ("skin", self.skin, SKIN_TONES),
            ("outfit", self.outfit, OUTFIT_COLOURS),
            ("background", self.background, BACKGROUND_COLOURS),
            ("accessory", self.accessory, ACCESSORIES),
            ("expression", self.expression, EXPRESSIONS),
        )
        for field, value, allowed in checks:
            if value not in allowed:
                raise InvalidInput(f"unknown {field} {value!r}; expected one of {', '.join(allowed)}")
        seen = {self.expression}
        for name, value in ((self.expression, self.intensity), *self.blend):
            if name not in EXPRESSIONS:
                raise InvalidInput(f"unknown emotion {name!r}; expected one of {', '.join(EXPRESSIONS)}")
            if not 0.0 <= float(value) <= 1.0:
                raise InvalidInput(f"intensity must be in [0, 1], got {value}")
        for name, _ in self.blend:
            if name in seen or name == "neutral":
                raise InvalidInput(f"emotion {name!r} appears twice in the face (or is neutral)")
            seen.add(name)

    def state(self) -> dict[str, float]:
        """{emotion: intensity} of the emotions drawn (those at or above `CALM_BELOW`)."""
        pairs = ((self.expression, self.intensity), *self.blend)
        return {e: float(i) for e, i in pairs if e != "neutral" and i >= CALM_BELOW}

    @property
    def dominant(self) -> str:
        """The strongest emotion drawn ("neutral" for a calm face; ties go to the basis order)."""
        state = self.state()
        return max(state, key=lambda e: (state[e], -EMOTIONS.index(e))) if state else "neutral"

    @property
    def named_strongest(self) -> frozenset[str]:
        """The emotions in the caption's highest intensity-word band ("very A and very B" names both:
        captions carry bands, not the intensities `dominant` compares)."""
        state = self.state()
        if not state:
            return frozenset({"neutral"})
        band = {e: band_centre(intensity_word(i)) for e, i in state.items()}
        top = max(band.values())
        return frozenset(e for e, b in band.items() if b == top)

    def caption(self) -> str:
        accessory = {"none": "", "glasses": "wearing glasses, ", "hat": "wearing a hat, "}[self.accessory]
        return (
            f"portrait of a girl with {self.hair_style} {self.hair_colour} hair, {self.eye_colour} eyes, "
            f"{self.skin} skin, {self.outfit} outfit, {self.background} background, "
            f"{accessory}{expression_phrase(self.state())}"
        )

    def identity_key(self) -> tuple[str, ...]:
        """Everything but the expression: the combination that evaluation holds out from training."""
        return (
            self.hair_colour,
            self.hair_style,
            self.eye_colour,
            self.skin,
            self.outfit,
            self.background,
            self.accessory,
        )

    def with_expression(self, expression: str, intensity: float) -> Portrait:
        return Portrait(**{**asdict(self), "expression": expression, "intensity": intensity, "blend": ()})

    def with_state(self, state: dict[str, float]) -> Portrait:
        """The same identity with the face of {emotion: intensity} (strongest first; empty = calm)."""
        ranked = sorted(((e, float(i)) for e, i in state.items() if i > 0), key=lambda kv: -kv[1])
        if not ranked:
            return self.with_expression("neutral", 0.0)
        (first, value), rest = ranked[0], tuple(ranked[1:])
        return Portrait(**{**asdict(self), "expression": first, "intensity": value, "blend": rest})


def _parse_expression(phrase: str) -> dict[str, float]:
    """The state of an expression slot: each intensity word read as its band's centre."""
    if phrase == EXPRESSIONS["neutral"]:
        return {}
    by_phrase = {words: name for name, words in EXPRESSIONS.items() if name != "neutral"}
    state: dict[str, float] = {}
    for part in phrase.split(f" {JOINER} "):
        word, _, rest = part.partition(" ")
        name = by_phrase.get(rest)
        if name is None or name in state:
            raise ValueError(part)
        state[name] = band_centre(word)
    return state


def portrait_from_caption(caption: str, intensity: float | None = None) -> Portrait:
    """The inverse of `Portrait.caption()`, e.g. to get the exact masks of a prompt written in this grammar.

    Intensities are the centres of the caption's bands; `intensity`, if given, replaces them all.
    """
    text = " ".join(caption.lower().split())
    prefix = "portrait of a girl with "
    parts = text[len(prefix) :].split(", ") if text.startswith(prefix) else []
    try:
        style, hair, _ = parts[0].split()
        eye, skin, outfit, background = (parts[k].split()[0] for k in range(1, 5))
        accessory = {"wearing glasses": "glasses", "wearing a hat": "hat"}.get(parts[5], "none")
        if len(parts) != (7 if accessory != "none" else 6):
            raise ValueError
        state = _parse_expression(parts[-1])
        if intensity is not None:
            state = dict.fromkeys(state, float(intensity))
        base = Portrait(hair, style, eye, skin, outfit, background, accessory, "neutral", 0.0)
    except (IndexError, ValueError, InvalidInput):
        raise InvalidInput(f"not a portrait-mini caption: {caption!r}") from None
    return base.with_state(state)


# --- drawing ---------------------------------------------------------------------------------------


class _Painter:
    """Draws each shape twice: in colour, and as a region label, so masks match pixels exactly."""

    def __init__(self, background: tuple[int, int, int]) -> None:
        self.rgb = Image.new("RGB", (CANVAS, CANVAS), background)
        self.lab = Image.new("L", (CANVAS, CANVAS), _LABEL["background"])
        self.d = ImageDraw.Draw(self.rgb)
        self.l = ImageDraw.Draw(self.lab)

    def ellipse(self, box, fill, label: str | None = None, outline=None, width: int = 0) -> None:
        self.d.ellipse(box, fill=fill, outline=outline, width=width)
        if label is not None:
            self.l.ellipse(box, fill=_LABEL[label])

    def polygon(self, pts, fill, label: str | None = None) -> None:
        self.d.polygon(pts, fill=fill)
        if label is not None:
            self.l.polygon(pts, fill=_LABEL[label])

    def rect(self, box, fill, label: str | None = None, radius: int = 0) -> None:
        self.d.rounded_rectangle(box, radius=radius, fill=fill)
        if label is not None:
            self.l.rounded_rectangle(box, radius=radius, fill=_LABEL[label])

    def line(self, pts, fill, width: int, label: str | None = None) -> None:
        self.d.line(pts, fill=fill, width=width, joint="curve")
        if label is not None:
            self.l.line(pts, fill=_LABEL[label], width=width, joint="curve")

    def blend_ellipse(self, box, colour, alpha: float) -> None:
        self._blend(lambda d: d.ellipse(box, fill=(*colour, int(255 * alpha))))

    def blend_rect(self, box, colour, alpha: float) -> None:
        self._blend(lambda d: d.rectangle(box, fill=(*colour, int(255 * alpha))))

    def _blend(self, draw) -> None:
        overlay = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0))
        draw(ImageDraw.Draw(overlay))
        self.rgb.paste(Image.alpha_composite(self.rgb.convert("RGBA"), overlay).convert("RGB"))
        self.d = ImageDraw.Draw(self.rgb)


def _curve(x0: float, x1: float, y: float, bend: float, n: int = 16) -> list[tuple[float, float]]:
    """A parabola from x0 to x1 at height y whose middle is displaced by `bend` (positive = down)."""
    pts = []
    for k in range(n + 1):
        t = k / n
        x = x0 + (x1 - x0) * t
        pts.append((x, y + bend * (1 - (2 * t - 1) ** 2)))
    return pts


def _draw_hair_back(p: _Painter, style: str, colour) -> None:
    cx, cy = HEAD_CENTER
    if style == "long":
        p.rect((cx - 84, cy - 80, cx + 84, cy + 120), colour, "hair", radius=60)
    elif style == "short":
        p.ellipse((cx - 70, cy - 82, cx + 70, cy + 40), colour, "hair")
    else:  # spiky
        p.ellipse((cx - 68, cy - 76, cx + 68, cy + 30), colour, "hair")
        spikes = []
        for k in range(7):
            a = math.pi * (1.05 + 0.9 * k / 6)
            base_l = (cx + 66 * math.cos(a - 0.2), cy - 10 + 66 * math.sin(a - 0.2))
            tip = (cx + 112 * math.cos(a), cy - 10 + 112 * math.sin(a))
            base_r = (cx + 66 * math.cos(a + 0.2), cy - 10 + 66 * math.sin(a + 0.2))
            spikes.append((base_l, tip, base_r))
        for tri in spikes:
            p.polygon(tri, colour, "hair")


def _draw_hair_front(p: _Painter, style: str, colour) -> None:
    cx, cy = HEAD_CENTER
    top = cy - HEAD_RADII[1]
    if style == "long":
        # fringe plus side locks falling over the shoulders
        p.polygon(
            [
                (cx - 64, cy - 10),
                (cx - 60, top + 10),
                (cx, top - 8),
                (cx + 60, top + 10),
                (cx + 64, cy - 10),
                (cx + 40, top + 22),
                (cx, top + 18),
                (cx - 40, top + 22),
            ],
            colour,
            "hair",
        )
        p.rect((cx - 86, cy - 20, cx - 56, cy + 130), colour, "hair", radius=14)
        p.rect((cx + 56, cy - 20, cx + 86, cy + 130), colour, "hair", radius=14)
    elif style == "short":
        p.polygon(
            [
                (cx - 66, cy),
                (cx - 62, top + 6),
                (cx, top - 10),
                (cx + 62, top + 6),
                (cx + 66, cy),
                (cx + 52, top + 24),
                (cx + 20, top + 14),
                (cx - 10, top + 22),
                (cx - 52, top + 18),
            ],
            colour,
            "hair",
        )
    else:
        pts = [(cx - 64, cy - 6)]
        for k in range(9):
            x = cx - 56 + 14 * k
            pts.append((x, top + (24 if k % 2 == 0 else 8)))
        pts += [(cx + 64, cy - 6), (cx + 56, top), (cx, top - 12), (cx - 56, top)]
        p.polygon(pts, colour, "hair")


def _draw_accessory(p: _Painter, accessory: str) -> None:
    cx, cy = HEAD_CENTER
    if accessory == "glasses":
        for side in (-1, 1):
            ex, ey = cx + side * 28, cy + 2
            p.d.ellipse((ex - 22, ey - 20, ex + 22, ey + 20), outline=(20, 20, 20), width=6)
        p.line([(cx - 6, cy), (cx + 6, cy)], (20, 20, 20), 6)
    elif accessory == "hat":
        top = cy - HEAD_RADII[1]
        # small and high, so the hair colour stays visible under it
        p.rect((cx - 62, top - 16, cx + 62, top - 6), _HAT, "accessory", radius=5)
        p.rect((cx - 36, top - 44, cx + 36, top - 10), _HAT, "accessory", radius=8)
        p.rect((cx - 36, top - 18, cx + 36, top - 11), (230, 200, 60), "accessory")


def render(portrait: Portrait, size: int = 64) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(uint8 HxWx3 image, {mask name: bool HxW}) at `size`; masks partition the image exactly.

    A mask pixel belongs to the region that covers most of its area at the drawing resolution.
    """
    if CANVAS % size:
        raise InvalidInput(f"size must divide {CANVAS}, got {size}")
    q = portrait
    hair, skin = HAIR_COLOURS[q.hair_colour], SKIN_TONES[q.skin]
    p = _Painter(BACKGROUND_COLOURS[q.background])
    cx, cy = HEAD_CENTER
    rx, ry = HEAD_RADII

    _draw_hair_back(p, q.hair_style, hair)
    p.rect((cx - 100, 196, cx + 100, 300), OUTFIT_COLOURS[q.outfit], "outfit", radius=40)
    p.rect((cx - 20, cy + 40, cx + 20, 206), skin, "neck", radius=8)
    p.ellipse((cx - 30, 186, cx + 30, 214), skin, "neck")
    p.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), skin, "face")
    draw_face(p, face_of(q.state()), EYE_COLOURS[q.eye_colour], skin)
    _draw_hair_front(p, q.hair_style, hair)
    _draw_accessory(p, q.accessory)

    f = CANVAS // size
    image = np.asarray(p.rgb.reduce(f), dtype=np.uint8)
    labels = (
        np.asarray(p.lab, dtype=np.uint8).reshape(size, f, size, f).transpose(0, 2, 1, 3).reshape(size, size, f * f)
    )
    counts = np.stack([(labels == k).sum(-1) for k in range(len(MASK_NAMES))], axis=-1)
    winner = counts.argmax(-1)
    masks = {name: winner == k for k, name in enumerate(MASK_NAMES)}
    return image, masks
