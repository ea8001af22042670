"""Per-model calibration: which setting (intensity word, attention weight, edit strength) draws a requested intensity.

A model does not draw "slightly" and "very" at the strengths their words promise, and attention
weights and edit strengths move a face by model-specific, non-linear amounts (charforge-mini draws
most of a smile by edit strength 0.15). Calibration measures it once per model: for every emotion and
every setting, how strongly the face shows that emotion (read by a judge, or by how much the face
changes when there is none). Requested intensity r is then drawn with the setting whose measured
response is r of the strongest one, interpolating attention and strength between neighbouring
settings of the same word, so equal requested steps become roughly equal perceived steps. A curve
measured over edit strengths starts at the calm face (strength 0), so small intensities interpolate
from nothing rather than snapping to the weakest measured setting. The result is a small JSON file
stored beside the model.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from charforge.errors import InvalidInput
from charforge.files import FileMemo
from charforge.validation import invalid_input

FILENAME = "emotion_calibration.json"
_HASH = re.compile(r"^[0-9a-f]{8,128}$")
# A strength curve ends at its first setting within this fraction of its strongest response. Its
# last few points differ by less than the judge's own noise (joy: 0.999 of the top at 0.3, the top at
# 0.4), so which of them is "the peak" is chance; the knee is where the curve stops rising for real.
PLATEAU = 0.02


def workspace_relpath(model_hash: str) -> PurePosixPath:
    """Where a workspace keeps the calibration of a user's model: calibrations/<model hash>.json."""
    if not _HASH.match(model_hash or ""):
        raise InvalidInput(f"not a model hash: {model_hash!r}")
    return PurePosixPath("calibrations") / f"{model_hash}.json"


class Point(BaseModel):
    """One measured setting: the intensity word and attention weight used, and the response measured."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    word: str
    attention: float = Field(gt=0.0, le=5.0)
    strength: float = Field(default=1.0, gt=0.0, le=3.0)  # edit strength (charforge.engine.edit_strength)
    response: float


class Curve(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    points: list[Point]
    calm: float = 0.0  # the response of the calm face (the floor of the scale)


class Calibration(BaseModel):
    """Measured curves of one model, keyed by basis emotion."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model_hash: str
    method: str  # "judge" or "face-change"
    emotions: dict[str, Curve]

    def chain(self, emotion: str) -> list[tuple[float, Point]]:
        """The settings of `emotion` that raise the response, as (perceived 0..1, point), weakest first.

        Settings that read weaker than an earlier one are dropped, so the chain is monotone by
        construction; perceived strength is the response above calm over the strongest response above calm.
        A chain over edit strengths stops at its knee (`PLATEAU`), which then counts as full strength.
        """
        curve = self.emotions[emotion]
        # over edit strengths the chain follows strength and ends where the response peaks; over words
        # and weights, whose order means nothing to the model, it follows the response
        order = sorted(curve.points, key=lambda p: p.strength if self.by_strength else p.response)
        top = max((p.response for p in order), default=0.0) - curve.calm
        if top <= 0:
            return []
        chain: list[tuple[float, Point]] = []
        for point in order:
            level = (point.response - curve.calm) / top
            if level > 0 and (not chain or level > chain[-1][0]):
                chain.append((level, point))
        if self.by_strength and chain:
            knee = next(i for i, (level, _) in enumerate(chain) if level >= 1.0 - PLATEAU)
            chain = [(level / chain[knee][0], p) for level, p in chain[: knee + 1]]
        return chain

    @property
    def by_strength(self) -> bool:
        """Curves measured over edit strengths: states are then drawn by composing one edit per emotion."""
        return any(p.strength != 1.0 for curve in self.emotions.values() for p in curve.points)

    def setting(self, emotion: str, intensity: float) -> tuple[str, float, float] | None:
        """(word, attention, strength) that draws `intensity` of `emotion` in equal perceived steps;
        None if unmeasured."""
        if emotion not in self.emotions:
            return None
        chain = self.chain(emotion)
        if not chain:
            return None
        first = chain[0][1]
        if self.by_strength:  # strength 0 is the calm face itself: start the chain there
            chain = [(0.0, first.model_copy(update={"strength": 0.0}, deep=True)), *chain]
        if intensity <= chain[0][0]:
            return first.word, first.attention, chain[0][1].strength
        for (lo, a), (hi, b) in zip(chain, chain[1:]):
            if intensity <= hi:
                t = (intensity - lo) / (hi - lo)
                if a.word == b.word:
                    return (a.word, a.attention + t * (b.attention - a.attention),
                            a.strength + t * (b.strength - a.strength))  # fmt: skip
                near = a if t < 0.5 else b
                return near.word, near.attention, near.strength
        last = chain[-1][1]
        return last.word, last.attention, last.strength


def load_calibration(path: str | os.PathLike[str]) -> Calibration | None:
    """The calibration in `path` (a JSON file, or a folder holding `FILENAME`); None when there is none.

    Parsed once per version of the file (a cached state is looked up per request, and each lookup
    needs the calibration); the model is frozen, so callers share it."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        return None
    return _parsed(path)


def _parse(path: Path) -> Calibration:
    try:
        return Calibration.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, ValidationError) as exc:
        if isinstance(exc, ValidationError):
            raise invalid_input(exc, str(path)) from None
        raise InvalidInput(f"{path}: not a calibration file ({exc})") from None


_parsed = FileMemo(_parse)


def save_calibration(calibration: Calibration, path: str | os.PathLike[str]) -> Path:
    """Write atomically (temp file + rename); `path` is a JSON file or a folder to hold `FILENAME`."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(calibration.model_dump(), indent=1), encoding="utf-8")
    tmp.replace(path)
    return path


__all__ = ["FILENAME", "workspace_relpath", "Calibration", "Curve", "Point", "load_calibration", "save_calibration"]
