"""Per-model calibration: which intensity word and attention weight draw a requested intensity.

A model does not draw "slightly" and "very" at the strengths their words promise, and attention
weights move a face by model-specific amounts. Calibration measures it once per model: for every
emotion and every (intensity word, attention weight) setting, how strongly the face shows that
emotion (read by a judge, or by how much the face changes when there is none). Requested intensity r
is then drawn with the setting whose measured response is r of the strongest one, interpolating the
attention weight between neighbouring settings of the same word, so equal requested steps become
roughly equal perceived steps. The result is a small JSON file stored beside the model.
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

        Settings that read weaker than a weaker-ranked one are dropped, so the chain is monotone by
        construction; perceived strength is the response above calm over the strongest response above calm.
        """
        curve = self.emotions[emotion]
        order = sorted(curve.points, key=lambda p: p.response)
        top = order[-1].response - curve.calm if order else 0.0
        if top <= 0:
            return []
        chain: list[tuple[float, Point]] = []
        for point in order:
            level = (point.response - curve.calm) / top
            if level > 0 and (not chain or level > chain[-1][0]):
                chain.append((level, point))
        return chain

    def setting(self, emotion: str, intensity: float) -> tuple[str, float] | None:
        """(word, attention) that draws `intensity` of `emotion` in equal perceived steps; None if unmeasured."""
        if emotion not in self.emotions:
            return None
        chain = self.chain(emotion)
        if not chain:
            return None
        if intensity <= chain[0][0]:
            return chain[0][1].word, chain[0][1].attention
        for (lo, a), (hi, b) in zip(chain, chain[1:]):
            if intensity <= hi:
                t = (intensity - lo) / (hi - lo)
                if a.word == b.word:
                    return a.word, a.attention + t * (b.attention - a.attention)
                return (a.word, a.attention) if t < 0.5 else (b.word, b.attention)
        return chain[-1][1].word, chain[-1][1].attention


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
