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
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from charforge.errors import InvalidInput

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

# Each expression is two words in the same slot at the end of the caption, so a Prompt-to-Prompt
# word swap between any two expressions aligns token for token.
EXPRESSIONS: dict[str, str] = {
    "neutral": "looking calm",
    "joy": "smiling happily",
    "sadness": "crying sadly",
    "anger": "frowning angrily",
    "surprise": "gasping surprised",
    "fear": "trembling fearfully",
    "disgust": "grimacing disgustedly",
}

MASK_NAMES: tuple[str, ...] = ("background", "hair", "face", "neck", "outfit", "accessory")
_LABEL = {name: i for i, name in enumerate(MASK_NAMES)}

CANVAS = 256  # drawing resolution; images are box-downsampled to `size` for clean edges
HEAD_CENTER = (128, 112)
HEAD_RADII = (60, 68)
_BROW_COLOUR = (58, 38, 30)
_LINE = (40, 24, 24)
_MOUTH_INSIDE = (120, 20, 30)
_TEETH = (250, 250, 250)
_TEAR = (70, 160, 255)
_HAT = (70, 48, 96)


@dataclass(frozen=True)
class Portrait:
    """The full description of one portrait; `caption()` renders it into the prompt the model learns."""

    hair_colour: str
    hair_style: str
    eye_colour: str
    skin: str
    outfit: str
    background: str
    accessory: str
    expression: str
    intensity: float

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
        if not 0.0 <= float(self.intensity) <= 1.0:
            raise InvalidInput(f"intensity must be in [0, 1], got {self.intensity}")

    def caption(self) -> str:
        accessory = {"none": "", "glasses": "wearing glasses, ", "hat": "wearing a hat, "}[self.accessory]
        return (
            f"portrait of a girl with {self.hair_style} {self.hair_colour} hair, {self.eye_colour} eyes, "
            f"{self.skin} skin, {self.outfit} outfit, {self.background} background, "
            f"{accessory}{EXPRESSIONS[self.expression]}"
        )

    def identity_key(self) -> tuple[str, ...]:
        """Everything but the expression: the combination that evaluation holds out from training."""
        return (self.hair_colour, self.hair_style, self.eye_colour, self.skin, self.outfit,
                self.background, self.accessory)

    def with_expression(self, expression: str, intensity: float) -> Portrait:
        return Portrait(**{**asdict(self), "expression": expression, "intensity": intensity})


def portrait_from_caption(caption: str, intensity: float = 1.0) -> Portrait:
    """The inverse of `Portrait.caption()`, e.g. to get the exact masks of a prompt written in this grammar."""
    text = " ".join(caption.lower().split())
    prefix = "portrait of a girl with "
    parts = text[len(prefix):].split(", ") if text.startswith(prefix) else []
    try:
        style, hair, _ = parts[0].split()
        eye, skin, outfit, background = (parts[k].split()[0] for k in range(1, 5))
        accessory = {"wearing glasses": "glasses", "wearing a hat": "hat"}.get(parts[5], "none")
        phrase = parts[-1]
        expression = next(name for name, words in EXPRESSIONS.items() if words == phrase)
        if len(parts) != (7 if accessory != "none" else 6):
            raise ValueError
    except (IndexError, ValueError, StopIteration):
        raise InvalidInput(f"not a portrait-mini caption: {caption!r}") from None
    return Portrait(hair, style, eye, skin, outfit, background, accessory, expression, intensity)


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


def random_portrait(rng: np.random.Generator, *, min_intensity: float = 0.3) -> Portrait:
    """Uniform over attributes; intensity uniform in [min_intensity, 1] (faint expressions teach little)."""

    def pick(options) -> str:
        options = list(options)
        return options[int(rng.integers(len(options)))]

    return Portrait(
        hair_colour=pick(HAIR_COLOURS),
        hair_style=pick(HAIR_STYLES),
        eye_colour=pick(EYE_COLOURS),
        skin=pick(SKIN_TONES),
        outfit=pick(OUTFIT_COLOURS),
        background=pick(BACKGROUND_COLOURS),
        accessory=pick(ACCESSORIES),
        expression=pick(EXPRESSIONS),
        intensity=round(float(rng.uniform(min_intensity, 1.0)), 3),
    )


def sample_portraits(seed: int, count: int, *, held_out: bool | None = False,
                     min_intensity: float = 0.3) -> Iterator[Portrait]:
    """`count` portraits from `seed`; held_out=False -> training combos only, True -> held-out only, None -> any."""
    rng = np.random.default_rng(seed)
    made = 0
    while made < count:
        p = random_portrait(rng, min_intensity=min_intensity)
        if held_out is None or is_held_out(p) == held_out:
            made += 1
            yield p


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
        p.polygon([(cx - 64, cy - 10), (cx - 60, top + 10), (cx, top - 8), (cx + 60, top + 10),
                   (cx + 64, cy - 10), (cx + 40, top + 22), (cx, top + 18), (cx - 40, top + 22)], colour, "hair")
        p.rect((cx - 86, cy - 20, cx - 56, cy + 130), colour, "hair", radius=14)
        p.rect((cx + 56, cy - 20, cx + 86, cy + 130), colour, "hair", radius=14)
    elif style == "short":
        p.polygon([(cx - 66, cy), (cx - 62, top + 6), (cx, top - 10), (cx + 62, top + 6), (cx + 66, cy),
                   (cx + 52, top + 24), (cx + 20, top + 14), (cx - 10, top + 22), (cx - 52, top + 18)],
                  colour, "hair")
    else:
        pts = [(cx - 64, cy - 6)]
        for k in range(9):
            x = cx - 56 + 14 * k
            pts.append((x, top + (24 if k % 2 == 0 else 8)))
        pts += [(cx + 64, cy - 6), (cx + 56, top), (cx, top - 12), (cx - 56, top)]
        p.polygon(pts, colour, "hair")


def _eye_openness(expression: str, i: float) -> float:
    return {
        "neutral": 1.0, "joy": 1.0 - 0.55 * i, "sadness": 0.85 - 0.15 * i, "anger": 0.85 - 0.25 * i,
        "surprise": 1.1 + 0.35 * i, "fear": 1.05 + 0.25 * i, "disgust": 0.75 - 0.3 * i,
    }[expression]


def _draw_eyes(p: _Painter, expression: str, i: float, iris) -> None:
    cx, cy = HEAD_CENTER
    openness = _eye_openness(expression, i)
    pupil = {"fear": 3, "surprise": 4}.get(expression, 5)
    for side in (-1, 1):
        ex, ey = cx + side * 28, cy + 4
        rx, ry = 16, 17 * openness
        if expression == "disgust" and side == -1:
            ry *= 0.6  # one eye narrowed more: disgust is lopsided
        p.ellipse((ex - rx, ey - ry, ex + rx, ey + ry), (255, 255, 255), outline=_LINE, width=3)
        ir = min(11.0, ry - 2)
        if ir > 2:
            p.ellipse((ex - ir, ey - ir, ex + ir, ey + ir), iris)
            pr = min(pupil, ir - 1)
            p.ellipse((ex - pr, ey - pr, ex + pr, ey + pr), (10, 10, 10))


def _draw_brows(p: _Painter, expression: str, i: float) -> None:
    cx, cy = HEAD_CENTER
    base = cy - 28
    # (raise both, inner end offset, outer end offset); negative y is up
    raise_, inner, outer = {
        "neutral": (0, 0, 0),
        "joy": (-5 * i, 0, 0),
        "sadness": (-2 * i, -16 * i, 6 * i),
        "anger": (4 * i, 16 * i, -8 * i),
        "surprise": (-18 * i, -2 * i, -2 * i),
        "fear": (-12 * i, -12 * i, 4 * i),
        "disgust": (0, 0, 0),
    }[expression]
    width = 9 if expression == "anger" else 8
    for side in (-1, 1):
        r_in, r_out = raise_ + inner, raise_ + outer
        if expression == "disgust":
            r_in, r_out = (12 * i, 0) if side == -1 else (-10 * i, -6 * i)
        x_in, x_out = cx + side * 10, cx + side * 46
        y_mid = base + (r_in + r_out) / 2 - (4 if expression in ("surprise", "joy") else 0)
        p.line([(x_out, base + r_out), ((x_in + x_out) / 2, y_mid), (x_in, base + r_in)], _BROW_COLOUR, width)


def _draw_mouth(p: _Painter, expression: str, i: float) -> None:
    cx, cy = HEAD_CENTER
    my = cy + 40
    if expression == "neutral":
        p.line([(cx - 16, my), (cx + 16, my)], _LINE, 6)
    elif expression == "joy":
        half = 20 + 10 * i
        bend = 8 + 16 * i
        upper = _curve(cx - half, cx + half, my - 4, 4 * i)
        lower = _curve(cx + half, cx - half, my - 4, bend)
        p.polygon(upper + lower, _MOUTH_INSIDE)
        if i > 0.35:
            p.polygon(upper + _curve(cx + half, cx - half, my - 4, 4 * i + 6), _TEETH)
        p.line(upper + lower + [upper[0]], _LINE, 4)
    elif expression == "sadness":
        half = 18 + 4 * i
        p.line(_curve(cx - half, cx + half, my + 8, -(6 + 14 * i)), _LINE, 7)
    elif expression == "anger":
        half, h = 22, 8 + 8 * i
        p.rect((cx - half, my - h / 2, cx + half, my + h / 2), _TEETH, radius=3)
        p.line([(cx - half, my), (cx + half, my)], _LINE, 3)
        for k in (-1, 0, 1):
            p.line([(cx + k * 11, my - h / 2), (cx + k * 11, my + h / 2)], _LINE, 2)
        p.d.rounded_rectangle((cx - half, my - h / 2, cx + half, my + h / 2), radius=3, outline=_LINE, width=4)
    elif expression == "surprise":
        rx, ry = 9 + 6 * i, 10 + 12 * i
        p.ellipse((cx - rx, my + 2 - ry, cx + rx, my + 2 + ry), _MOUTH_INSIDE, outline=_LINE, width=4)
    elif expression == "fear":
        half = 20
        amp = 3 + 5 * i
        top = [(cx - half + 40 * k / 8, my - 2 + (amp if k % 2 else -amp)) for k in range(9)]
        bottom = [(cx + half, my + 10 + 6 * i), (cx - half, my + 10 + 6 * i)]
        p.polygon(top + bottom, _MOUTH_INSIDE)
        p.line(top, _TEETH, 4)
        p.line(top + bottom + [top[0]], _LINE, 3)
    elif expression == "disgust":
        pts = [(cx - 22, my + 6 + 6 * i), (cx - 8, my - 2), (cx + 6, my + 6), (cx + 22, my - 8 - 6 * i)]
        p.line(pts, _LINE, 7)
        # tongue out at high intensity
        if i > 0.5:
            p.ellipse((cx - 4, my + 2, cx + 10, my + 10 + 10 * i), (230, 90, 110), outline=_LINE, width=2)


def _draw_marks(p: _Painter, expression: str, i: float) -> None:
    """Cartoon signs that make an expression readable at 64x64: blush, tears, anger vein, sweat, green pallor."""
    cx, cy = HEAD_CENTER
    if expression == "joy":
        a = int(80 + 140 * i)
        for side in (-1, 1):
            x, y = cx + side * 40, cy + 26
            _blend_ellipse(p, (x - 12, y - 6, x + 12, y + 6), (255, 90, 120), a / 255)
    elif expression == "sadness":
        length = 14 + 44 * i
        for side in (-1, 1):
            x, y = cx + side * 30, cy + 18
            p.rect((x - 4, y, x + 4, y + length), _TEAR, "face", radius=4)
    elif expression == "anger":
        x, y, s = cx + 44, cy + 30, 8 + 8 * i
        for dx, dy in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
            p.line([(x + dx * s * 0.3, y + dy * s), (x + dx * s * 0.3, y + dy * s * 0.3),
                    (x + dx * s, y + dy * s * 0.3)], (220, 20, 20), 5, "face")
    elif expression == "fear":
        for k in range(3):
            y = cy + 24 + 7 * k
            _blend_rect(p, (cx - 52, y, cx - 30, y + 3), (90, 90, 200), 0.4 + 0.5 * i)
            _blend_rect(p, (cx + 30, y, cx + 52, y + 3), (90, 90, 200), 0.4 + 0.5 * i)
        x, y = cx + 58, cy - 24
        p.polygon([(x, y - 10 - 8 * i), (x - 7, y + 4), (x + 7, y + 4)], (150, 210, 255), "face")
        p.ellipse((x - 7, y - 4, x + 7, y + 10), (150, 210, 255), "face")
    elif expression == "disgust":
        _blend_ellipse(p, (cx - 40, cy + 26, cx + 40, cy + 58), (90, 170, 60), 0.25 + 0.45 * i)


def _blend_ellipse(p: _Painter, box, colour, alpha: float) -> None:
    overlay = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0))
    ImageDraw.Draw(overlay).ellipse(box, fill=(*colour, int(255 * alpha)))
    p.rgb.paste(Image.alpha_composite(p.rgb.convert("RGBA"), overlay).convert("RGB"))


def _blend_rect(p: _Painter, box, colour, alpha: float) -> None:
    overlay = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0))
    ImageDraw.Draw(overlay).rectangle(box, fill=(*colour, int(255 * alpha)))
    p.rgb.paste(Image.alpha_composite(p.rgb.convert("RGBA"), overlay).convert("RGB"))


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
    i = float(q.intensity)
    hair, skin = HAIR_COLOURS[q.hair_colour], SKIN_TONES[q.skin]
    p = _Painter(BACKGROUND_COLOURS[q.background])
    cx, cy = HEAD_CENTER
    rx, ry = HEAD_RADII

    _draw_hair_back(p, q.hair_style, hair)
    p.rect((cx - 100, 196, cx + 100, 300), OUTFIT_COLOURS[q.outfit], "outfit", radius=40)
    p.rect((cx - 20, cy + 40, cx + 20, 206), skin, "neck", radius=8)
    p.ellipse((cx - 30, 186, cx + 30, 214), skin, "neck")
    p.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), skin, "face")
    _draw_marks_under = q.expression in ("joy", "disgust")
    if _draw_marks_under:
        _draw_marks(p, q.expression, i)
    _draw_eyes(p, q.expression, i, EYE_COLOURS[q.eye_colour])
    _draw_brows(p, q.expression, i)
    _draw_mouth(p, q.expression, i)
    if not _draw_marks_under:
        _draw_marks(p, q.expression, i)
    _draw_hair_front(p, q.hair_style, hair)
    _draw_accessory(p, q.accessory)

    f = CANVAS // size
    image = np.asarray(p.rgb.reduce(f), dtype=np.uint8)
    labels = np.asarray(p.lab, dtype=np.uint8).reshape(size, f, size, f).transpose(0, 2, 1, 3).reshape(size, size, f * f)
    counts = np.stack([(labels == k).sum(-1) for k in range(len(MASK_NAMES))], axis=-1)
    winner = counts.argmax(-1)
    masks = {name: winner == k for k, name in enumerate(MASK_NAMES)}
    return image, masks
