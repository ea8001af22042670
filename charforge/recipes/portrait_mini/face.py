"""The face of a procedural portrait as continuous parameters: graded intensity and per-part mixtures.

Every basis emotion is a set of offsets from the calm face, per facial part (brows, eyes, mouth),
that grows continuously from zero at intensity 0, plus cartoon marks (blush, tears, ...) whose
strength follows its own intensity. A mixture gives each part its own blend: a part's offsets are
a weighted sum of the emotions' offsets with weights sharpened by how much each emotion "owns" the
part (anger owns the brows, disgust the mouth, surprise the eyes), so anger with disgust draws angry
brows over a disgusted mouth instead of an average face that shows neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

PARTS: tuple[str, ...] = ("brows", "eyes", "mouth")

# the eight Plutchik emotions in the order of charforge.emotion.table.BASIS (also the caption order)
EMOTIONS: tuple[str, ...] = ("joy", "trust", "fear", "surprise", "sadness", "disgust", "anger", "anticipation")

# how strongly each emotion shows in each part (brows, eyes, mouth): decides who owns a part in a mixture
SALIENCE: dict[str, tuple[float, float, float]] = {
    "joy": (0.3, 0.4, 1.0),
    "trust": (0.3, 0.9, 0.8),
    "fear": (0.7, 0.9, 0.6),
    "surprise": (0.8, 1.0, 0.7),
    "sadness": (1.0, 0.5, 0.8),
    "disgust": (0.4, 0.5, 1.0),
    "anger": (1.0, 0.7, 0.5),
    "anticipation": (0.9, 0.8, 0.6),
}
OWNERSHIP_POWER = 4.0
# drawn strength = intensity ** GAMMA: a little concave, so that faint (0.1-0.2) faces already show
GAMMA = 0.8

# offsets from the calm face (drawing pixels at 256x256); zero for every parameter not named. Brows
# rise at most ~16 px: higher, they would slide under the fringe and vanish.
_BROW_KEYS = ("raise_", "inner", "outer", "asym", "arch", "thick")
_EYE_KEYS = ("open", "pupil", "squint_left", "lid", "sparkle")
_MOUTH_KEYS = ("half", "lift", "upper", "open", "teeth", "clench", "wave", "skew", "tongue")


def _ramp(i: float, lo: float, hi: float) -> float:
    return float(np.clip((i - lo) / (hi - lo), 0.0, 1.0))


def _offsets(emotion: str, i: float) -> dict[str, dict[str, float]]:
    """Per-part offsets of one emotion at intensity i; all of them are zero at i = 0 and monotone in i."""
    if emotion == "joy":
        return {
            "brows": {"raise_": -5 * i, "arch": -4 * i},
            "eyes": {"open": -0.55 * i},
            "mouth": {"half": 12 * i, "lift": 14 * i, "open": 22 * _ramp(i, 0.15, 1.0), "teeth": _ramp(i, 0.3, 0.7)},
        }
    if emotion == "trust":
        return {
            "brows": {"raise_": -4 * i, "arch": -5 * i},
            "eyes": {"open": -0.3 * i, "lid": i},
            "mouth": {"half": 6 * i, "lift": 10 * i},
        }
    if emotion == "fear":
        return {
            "brows": {"raise_": -8 * i, "inner": -9 * i, "outer": 5 * i},
            "eyes": {"open": 0.3 * i, "pupil": -2.5 * i},
            "mouth": {"half": 2 * i, "lift": -3 * i, "open": 14 * i, "wave": 6 * i, "teeth": _ramp(i, 0.2, 0.6)},
        }
    if emotion == "surprise":
        return {
            "brows": {"raise_": -13 * i, "inner": -1 * i, "outer": -1 * i, "arch": -3 * i},
            "eyes": {"open": 0.45 * i, "pupil": -1.5 * i},
            "mouth": {"half": -7 * i, "upper": -10 * i, "open": 20 * i},
        }
    if emotion == "sadness":
        return {
            "brows": {"raise_": -1 * i, "inner": -14 * i, "outer": 7 * i},
            "eyes": {"open": -0.2 * i},
            "mouth": {"half": 2 * i, "lift": -12 * i, "upper": -4 * i},
        }
    if emotion == "disgust":
        return {
            "brows": {"asym": i},
            "eyes": {"open": -0.3 * i, "squint_left": 0.4 * i},
            "mouth": {"half": 4 * i, "skew": 11 * i, "open": 4 * i, "tongue": _ramp(i, 0.4, 1.0)},
        }
    if emotion == "anger":
        return {
            "brows": {"raise_": 4 * i, "inner": 18 * i, "outer": -8 * i, "thick": 2 * i},
            "eyes": {"open": -0.25 * i},
            "mouth": {
                "half": 7 * i,
                "lift": -4 * i,
                "upper": -3 * i,
                "open": 18 * i,
                "teeth": i,
                "clench": _ramp(i, 0.0, 0.5),
            },
        }
    if emotion == "anticipation":
        return {
            "brows": {"raise_": -9 * i, "outer": -3 * i, "arch": -3 * i},
            "eyes": {"open": 0.25 * i, "pupil": 2.0 * i, "sparkle": i},
            "mouth": {"half": 3 * i, "lift": 7 * i, "open": 9 * i},
        }
    raise KeyError(emotion)


@dataclass(frozen=True)
class Face:
    """Blended part parameters (offsets from calm) and the marks' intensities of one portrait."""

    brows: dict[str, float]
    eyes: dict[str, float]
    mouth: dict[str, float]
    marks: dict[str, float]  # emotion -> intensity of its cartoon marks

    def part(self, name: str) -> dict[str, float]:
        return {"brows": self.brows, "eyes": self.eyes, "mouth": self.mouth}[name]


def ownership(state: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """part -> {emotion: share of that part's blend}; shares of a part sum to 1 when any emotion is present."""
    shares: dict[str, dict[str, float]] = {}
    for k, part in enumerate(PARTS):
        raw = {e: (i * SALIENCE[e][k]) ** OWNERSHIP_POWER for e, i in state.items() if i > 0}
        total = sum(raw.values())
        shares[part] = {e: v / total for e, v in raw.items()} if total > 0 else {}
    return shares


def face_of(state: Mapping[str, float]) -> Face:
    """The face of a (possibly mixed) emotion state {emotion: intensity in [0, 1]}."""
    state = {e: float(i) ** GAMMA for e, i in state.items() if e in SALIENCE and i > 0}
    shares = ownership(state)
    parts = {}
    for part, keys in (("brows", _BROW_KEYS), ("eyes", _EYE_KEYS), ("mouth", _MOUTH_KEYS)):
        blended = dict.fromkeys(keys, 0.0)
        for e, share in shares[part].items():
            for key, value in _offsets(e, state[e])[part].items():
                blended[key] += share * value
        parts[part] = blended
    return Face(parts["brows"], parts["eyes"], parts["mouth"], dict(state))


# --- drawing ---------------------------------------------------------------------------------------
# `p` is render's painter (colour image + label map); the face is drawn over the skin ellipse.

CANVAS = 256  # drawing resolution; images are box-downsampled for clean edges
HEAD_CENTER = (128, 112)
HEAD_RADII = (60, 68)
_BROW_COLOUR = (58, 38, 30)
_LINE = (40, 24, 24)
_MOUTH_INSIDE = (120, 20, 30)
_TEETH = (250, 250, 250)
_TEAR = (70, 160, 255)
_TONGUE = (230, 90, 110)


def _mix(a, b, t: float) -> tuple[int, int, int]:
    t = float(np.clip(t, 0.0, 1.0))
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def _draw_eyes(p, eyes: dict[str, float], iris, skin) -> None:
    cx, cy = HEAD_CENTER
    openness = max(0.12, 1.0 + eyes["open"])
    pupil = max(1.5, 5.0 + eyes["pupil"])
    for side in (-1, 1):
        ex, ey = cx + side * 28, cy + 4
        rx, ry = 16, 17 * openness
        if side == -1:
            ry *= 1.0 - eyes["squint_left"]  # one eye narrowed more: disgust is lopsided
        ry = max(ry, 1.5)
        p.ellipse((ex - rx, ey - ry, ex + rx, ey + ry), (255, 255, 255), outline=_LINE, width=3)
        ir = min(11.0, ry - 2)
        if ir > 2:
            p.ellipse((ex - ir, ey - ir, ex + ir, ey + ir), iris)
            pr = min(pupil, ir - 1)
            p.ellipse((ex - pr, ey - pr, ex + pr, ey + pr), (10, 10, 10))
            spark = 5.5 * eyes["sparkle"]
            if spark >= 0.5:  # eager, shining eyes
                sx, sy = ex + ir * 0.35, ey - ir * 0.35
                p.ellipse((sx - spark, sy - spark, sx + spark, sy + spark), (255, 255, 255))
        lid = eyes["lid"]
        if lid > 0.02:  # calm, relaxed eyes: a heavy upper lid lowered over the eye
            y = ey - ry + 2 * ry * 0.45 * lid
            p.polygon(
                [(ex - rx - 2, ey - ry - 3), (ex + rx + 2, ey - ry - 3), (ex + rx + 2, y), (ex - rx - 2, y)], skin
            )
            p.line([(ex - rx - 1, y + 1), (ex, y + 3 * lid), (ex + rx + 1, y + 1)], _LINE, 2 + round(3 * lid))


def _draw_brows(p, brows: dict[str, float]) -> None:
    cx, cy = HEAD_CENTER
    base = cy - 28
    a = brows["asym"]
    width = 8 + round(brows["thick"])
    for side in (-1, 1):
        r_in = brows["raise_"] + brows["inner"] + (12 * a if side == -1 else -10 * a)
        r_out = brows["raise_"] + brows["outer"] + (0.0 if side == -1 else -6 * a)
        x_in, x_out = cx + side * 10, cx + side * 46
        y_mid = base + (r_in + r_out) / 2 + brows["arch"]
        p.line([(x_out, base + r_out), ((x_in + x_out) / 2, y_mid), (x_in, base + r_in)], _BROW_COLOUR, width)


def _lip(
    x0: float, y0: float, x1: float, y1: float, mid: float, n: int = 16, power: float = 1.0, wave: float = 0.0
) -> list[tuple[float, float]]:
    """A curve from (x0, y0) to (x1, y1) whose middle sits `mid` below the chord (bump shape ** power)."""
    pts = []
    for k in range(n + 1):
        t = k / n
        bump = (1 - (2 * t - 1) ** 2) ** power
        zig = wave * (1 if k % 2 else -1) * (1 if 0 < k < n else 0)
        pts.append((x0 + (x1 - x0) * t, y0 + (y1 - y0) * t + mid * bump + zig))
    return pts


def _draw_mouth(p, m: dict[str, float]) -> None:
    cx, cy = HEAD_CENTER
    my = cy + 40
    half = max(6.0, 16 + m["half"])
    yl, yr = my - m["lift"] + m["skew"], my - m["lift"] - m["skew"]
    # the upper lip's middle stays at the calm line (plus `upper`): raised corners make a smile
    upper = _lip(cx - half, yl, cx + half, yr, my + m["upper"] - (yl + yr) / 2, wave=m["wave"])
    opening = max(0.0, m["open"])
    if opening < 1.0:
        p.line(upper, _LINE, 6)
    else:
        lower = [(x, y + opening * (1 - (2 * k / 16 - 1) ** 2) ** 0.75) for k, (x, y) in enumerate(upper)]
        lower[0], lower[-1] = upper[0], upper[-1]
        inside = _mix(_MOUTH_INSIDE, _TEETH, m["clench"])
        p.polygon(upper + lower[::-1], inside)
        if m["teeth"] > 0.02 and m["clench"] < 0.98:
            depth = min(opening, 4 + 0.35 * opening)
            strip = [(x, y + depth * (1 - (2 * k / 16 - 1) ** 2) ** 0.75) for k, (x, y) in enumerate(upper)]
            p.polygon(upper + strip[::-1], _mix(inside, _TEETH, m["teeth"]))
        if m["clench"] > 0.02:  # clenched teeth: tooth gaps and the bite line
            shade = _mix(inside, _LINE, m["clench"])
            mid = [(x, (yu + yd) / 2) for (x, yu), (_, yd) in zip(upper, lower)]
            p.line(mid, shade, 3)
            for k in (4, 8, 12):
                p.line([upper[k], lower[k]], shade, 2)
        p.line(upper + lower[::-1] + [upper[0]], _LINE, 4)
    tongue = m["tongue"]
    if tongue > 0.02:  # tongue out
        x, y = cx + 3, my + opening * 0.6 + 2
        p.ellipse((x - 2 - 6 * tongue, y - 4, x + 2 + 6 * tongue, y + 4 + 16 * tongue), _TONGUE, outline=_LINE, width=2)


def _draw_marks(p, marks: dict[str, float], skin, under: bool) -> None:
    """Cartoon signs, each as strong as its emotion: blush and green pallor under the features, the rest over."""
    cx, cy = HEAD_CENTER
    if under:
        if marks.get("joy", 0) > 0:
            for side in (-1, 1):
                x, y = cx + side * 40, cy + 26
                p.blend_ellipse((x - 12, y - 6, x + 12, y + 6), (255, 90, 120), 0.85 * marks["joy"])
        if marks.get("disgust", 0) > 0:
            p.blend_ellipse((cx - 40, cy + 26, cx + 40, cy + 58), (90, 170, 60), 0.7 * marks["disgust"])
        return
    i = marks.get("sadness", 0.0)
    if i > 0.02:
        for side in (-1, 1):
            x, y = cx + side * 30, cy + 18
            p.rect((x - 4, y, x + 4, y + 2 + 56 * i), _mix(skin, _TEAR, 0.4 + 0.6 * i), "face", radius=4)
    i = marks.get("anger", 0.0)
    if i > 0.02:
        x, y, s = cx + 44, cy + 30, 4 + 12 * i
        for dx, dy in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
            p.line(
                [(x + dx * s * 0.3, y + dy * s), (x + dx * s * 0.3, y + dy * s * 0.3), (x + dx * s, y + dy * s * 0.3)],
                _mix(skin, (220, 20, 20), 0.3 + 0.7 * i),
                5,
                "face",
            )
    i = marks.get("fear", 0.0)
    if i > 0.02:
        for k in range(3):
            y = cy + 24 + 7 * k
            p.blend_rect((cx - 52, y, cx - 30, y + 3), (90, 90, 200), 0.9 * i)
            p.blend_rect((cx + 30, y, cx + 52, y + 3), (90, 90, 200), 0.9 * i)
        x, y = cx + 58, cy - 24
        colour = _mix(skin, (150, 210, 255), 0.3 + 0.7 * i)
        p.polygon([(x, y - 2 - 16 * i), (x - 7 * i, y + 4), (x + 7 * i, y + 4)], colour, "face")
        p.ellipse((x - 7 * i, y + 4 - 14 * i, x + 7 * i, y + 4), colour, "face")


def draw_face(p, face: Face, iris, skin) -> None:
    """Eyes, brows, mouth and marks of `face` on the painter's (already drawn) head."""
    _draw_marks(p, face.marks, skin, under=True)
    _draw_eyes(p, face.eyes, iris, skin)
    _draw_brows(p, face.brows)
    _draw_mouth(p, face.mouth)
    _draw_marks(p, face.marks, skin, under=False)
