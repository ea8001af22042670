"""Emotion -> music: a feeling's valence and arousal become a prompt, a tempo and a loudness target.

Valence and arousal come from `EmotionState.vad()`, the same space the training music was drawn
from (`charforge.recipes.bgm_mini.dataset` builds its captions with `prompt_for` and this table),
so a mood word or tempo in the prompt means to the model what it meant in training. Every mood
leaves at the table's one loudness target: arousal is heard in tempo and density, not in level.
By default the model does not draw from the prompt alone: a sketch composed for the plan (its mode,
tempo, density and brightness; `charforge.audio.seeding`) steers it (`charforge.audio.steer`, the
table's `[sketch]`). The mapping is data (`moods.toml`), so a game can retune it per character without code: a brooding
character gets `arousal_offset = -0.3`, a Riffusion user rewrites `template` and the words.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from charforge.emotion.state import EmotionState
from charforge.errors import InvalidInput
from charforge.validation import table_with_overrides


class _Bands(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bounds: list[float] = Field(min_length=1)
    words: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> _Bands:
        if len(self.words) != len(self.bounds):
            raise ValueError(f"{len(self.words)} words for {len(self.bounds)} bands")
        if any(b >= c for b, c in zip(self.bounds, self.bounds[1:])) or self.bounds[-1] != 1.0:
            raise ValueError("bounds must increase and end at 1.0")
        return self

    def index(self, value: float) -> int:
        """The band holding `value`: bands are closed below, open above (the last also holds 1.0)."""
        return next((i for i, bound in enumerate(self.bounds) if value < bound), len(self.bounds) - 1)


class ValenceBands(_Bands):
    modes: list[str]

    @model_validator(mode="after")
    def _modes(self) -> ValenceBands:
        if len(self.modes) != len(self.bounds) or not set(self.modes) <= {"major", "minor"}:
            raise ValueError("modes needs one of 'major'/'minor' per band")
        return self


class ArousalBands(_Bands):
    bpm: tuple[float, float]
    density: tuple[float, float]


class SketchSettings(BaseModel):
    """How the default BGM path steers the model with a composed sketch (`charforge.audio.steer`).

    `strength` is img2img's: how much of the diffusion schedule redraws the sketch's spectrogram
    (lower keeps more of its onsets, so its tempo). After decoding, `pitch` of the sketch's fine
    spectral structure (its harmonic peaks, finer than `detail` of the mel axis) replaces the model's,
    and `envelope` of the sketch's coarse spectral envelope is mixed with the model's (0: the
    model's timbre and dynamics alone).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    strength: float = Field(0.5, gt=0, le=1)
    pitch: float = Field(1.0, ge=0, le=1)
    envelope: float = Field(0.5, ge=0, le=1)
    detail: float = Field(0.047, gt=0, le=0.5)


class MoodTable(BaseModel):
    """The shipped `moods.toml`, possibly with a character's `settings["music"]` merged in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    template: str
    negative: str = ""
    lead: str
    valence_offset: float = Field(0.0, ge=-2, le=2)
    arousal_offset: float = Field(0.0, ge=-2, le=2)
    step: float = Field(0.1, gt=0, le=1)
    bpm_step: float = Field(5.0, gt=0, le=60)
    loudness_lufs: float = Field(-16.0, ge=-70, le=-5)
    true_peak_dbtp: float = Field(-1.0, ge=-20, le=0)
    high_band: float = Field(0.0, ge=0, le=1)  # > 0: fill above the model's band by octave replication
    neutral: tuple[float, float] = (0.0, -0.3)  # the (valence, arousal) a neutral state plays
    valence: ValenceBands
    arousal: ArousalBands
    model: str | None = None  # a BGM model folder/file/hub id for this character (None: the shipped one)
    sketch: SketchSettings = SketchSettings()


class MusicPlan(BaseModel):
    """What to play for one mood: the prompt and the musical targets it stands for."""

    model_config = ConfigDict(frozen=True)

    valence: float
    arousal: float
    mode: str
    bpm: float
    density: float
    loudness_lufs: float
    true_peak_dbtp: float
    high_band: float = 0.0
    prompt: str
    negative: str
    sketch: SketchSettings | None = None  # None: the model draws freely from the prompt

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


@lru_cache(maxsize=1)
def _shipped() -> dict[str, Any]:
    return tomllib.loads(resources.files("charforge.audio").joinpath("moods.toml").read_text(encoding="utf-8"))


def mood_table(overrides: Mapping[str, Any] | None = None) -> MoodTable:
    """The shipped table with `overrides` (a character's `settings["music"]`) merged in."""
    return table_with_overrides(MoodTable, _shipped(), overrides, "music", "moods.toml")


def _lerp(span: tuple[float, float], arousal: float) -> float:
    return span[0] + (span[1] - span[0]) * (arousal + 1.0) / 2.0


def _unit(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not -1.0 <= value <= 1.0:
        raise InvalidInput(f"{name} must be a number in [-1, 1], got {value!r}")
    return float(value)


def _snap(value: float, step: float) -> float:
    """Clamp to [-1, 1] and round to the table's step: moods closer than a step sound the same, so
    they share one plan and one cached file."""
    return round(min(1.0, max(-1.0, round(value / step) * step)), 6)


def arousal_bpm(arousal: float, table: MoodTable | None = None) -> float:
    """The tempo an arousal level stands for (linear over the table's `arousal.bpm` span)."""
    return _lerp((table or mood_table()).arousal.bpm, arousal)


def prompt_for(valence: float, arousal: float, bpm: float, lead: str, table: MoodTable | None = None) -> str:
    """The table's template filled for exact values: band words of valence and arousal, the tempo
    rounded to `bpm_step`. Training captions and runtime prompts are both made here."""
    table = table or mood_table()
    vi, ai = table.valence.index(valence), table.arousal.index(arousal)
    bucket = round(bpm / table.bpm_step) * table.bpm_step
    words = {"energy": table.arousal.words[ai], "mood": table.valence.words[vi], "lead": lead,
             "bpm": f"{bucket:g}", "mode": table.valence.modes[vi]}
    try:
        return table.template.format(**words)
    except (KeyError, IndexError, ValueError) as exc:
        raise InvalidInput(
            f"music template {table.template!r} is not valid: unknown or malformed field {exc}"
        ) from None


def plan_music(valence: float, arousal: float, table: MoodTable | None = None) -> MusicPlan:
    """The plan for a point of the valence/arousal square (after the table's offsets)."""
    table = table or mood_table()
    v = _snap(_unit("valence", valence) + table.valence_offset, table.step)
    a = _snap(_unit("arousal", arousal) + table.arousal_offset, table.step)
    mode, bpm = table.valence.modes[table.valence.index(v)], _lerp(table.arousal.bpm, a)
    prompt = prompt_for(v, a, bpm, table.lead, table)
    return MusicPlan(valence=round(v, 4), arousal=round(a, 4), mode=mode, bpm=round(bpm, 1),
                     density=round(_lerp(table.arousal.density, a), 3),
                     loudness_lufs=table.loudness_lufs, true_peak_dbtp=table.true_peak_dbtp,
                     high_band=table.high_band, prompt=prompt,
                     negative=table.negative, sketch=table.sketch if table.sketch.enabled else None)


def plan_for_state(state: EmotionState, table: MoodTable | None = None) -> MusicPlan:
    """The plan for an emotion state, through its valence and arousal.

    A neutral state (every intensity below the threshold) plays the table's `neutral` point: its
    valence/arousal (0, 0) sits on band edges, where the lookup would pick "upbeat hopeful".
    """
    if state.is_neutral:
        return plan_music(*(table or mood_table()).neutral, table)
    vad = state.vad()
    return plan_music(max(-1.0, min(1.0, vad.valence)), max(-1.0, min(1.0, vad.arousal)), table)
