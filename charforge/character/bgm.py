"""A character's music: its current feeling -> a mood plan -> spectrogram diffusion -> a cached audio file.

BGM assets are keyed like CGs: the same plan, model, length, seed, format and options give the same
key, so a game asking for "Mira, sad" twice pays once. The key holds the plan (mood words, tempo,
loudness target), not the raw emotion state, so neighbouring states that sound the same share one
file. Every clip is normalised to the plan's integrated loudness under its true-peak ceiling, and a
loop carries its loop points (OGG/FLAC tags, and in the asset's parameters for the JSON sidecar).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from charforge.audio.audiofile import LoopPoints, formats
from charforge.audio.loudness import normalize_loudness
from charforge.audio.mood import MusicPlan, mood_table, plan_for_state, plan_music
from charforge.canonical import canonical_hash
from charforge.emotion.state import EmotionState
from charforge.errors import InvalidInput, ModelLoadError
from charforge.store import AssetKind

if TYPE_CHECKING:
    from charforge.audio.compose import Clip
    from charforge.character.handle import Asset, Character
    from charforge.engine.loading import ModelBundle

log = logging.getLogger(__name__)

KEY_VERSION = 2
DEFAULT_FORMAT = "wav"
DEFAULT_SECONDS = 10.0
MAX_SECONDS = 300.0
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 5.0
LOOP_BAR_BEATS = 4
_LOADED: dict[tuple[str, str | None], ModelBundle] = {}


@dataclass(frozen=True)
class BGMResult:
    """A piece of music for a mood: where it is, what it was meant to sound like, and whether it was cached."""

    path: Path
    plan: MusicPlan
    seconds: float
    sample_rate: int
    cached: bool
    asset: Asset | None = None
    key: str | None = None
    plan_to: MusicPlan | None = None  # transitions: the mood the music ends in
    loop: LoopPoints | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {"path": str(self.path), "plan": self.plan.to_dict(), "seconds": self.seconds,
                "sample_rate": self.sample_rate, "cached": self.cached, "hash": self.key}
        if self.plan_to is not None:
            data["plan_to"] = self.plan_to.to_dict()
        if self.loop is not None:
            data["loop"] = {"start": self.loop.start, "length": self.loop.length}
        return data


def bgm_model(ref: str | Path | None = None) -> ModelBundle:
    """The BGM model (None: the shipped charforge-mini-bgm), loaded once per process."""
    from charforge.engine.loading import default_bgm_model_path, load_model, weights_hash

    if ref is None:
        ref = default_bgm_model_path()
        if not (ref / "model_index.json").is_file():
            raise ModelLoadError(f"the default BGM model is not installed at {ref}; pass a BGM model folder")
    key = (str(ref), weights_hash(ref))
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_model(ref)
    return _LOADED[key]


def _bgm_model_hash(ref: str | Path | None) -> str:
    from charforge.engine.loading import default_bgm_model_path, weights_hash

    return weights_hash(default_bgm_model_path() if ref is None else ref) or bgm_model(ref).model_hash


def _check(seconds: float, seed: int, steps: int, guidance: float) -> None:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 < seconds <= MAX_SECONDS:
        raise InvalidInput(f"seconds must be in (0, {MAX_SECONDS:g}], got {seconds!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InvalidInput(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(steps, int) or steps < 1:
        raise InvalidInput(f"steps must be a positive integer, got {steps!r}")
    if guidance < 0:
        raise InvalidInput(f"guidance must be >= 0, got {guidance}")


def check_format(fmt: str) -> str:
    """The file suffix of a format name (`wav`, `ogg`, `flac`), or one clear error."""
    name = str(fmt).lower().lstrip(".")
    if name not in formats():
        raise InvalidInput(f"unknown or unavailable audio format {fmt!r}; choose one of {', '.join(formats())}")
    return "." + name


def _steady(samples: np.ndarray, sample_rate: int, plan: MusicPlan) -> np.ndarray:
    """The plan's loudness target under its true-peak ceiling (see `charforge.audio.loudness`)."""
    return normalize_loudness(samples, sample_rate, plan.loudness_lufs, plan.true_peak_dbtp)


def render_plan(
    plan: MusicPlan, *, seconds: float = DEFAULT_SECONDS, seed: int = 0, loop: bool = False,
    model: str | Path | ModelBundle | None = None, steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE,
    progress: bool = False,
) -> Clip:
    """Music for one plan (no character, nothing stored).

    `loop` returns whole bars (as many as fit in `seconds`, at least two) with a seamless seam.
    """
    from charforge.audio.compose import Clip, generate_clip, make_loop

    _check(seconds, seed, steps, guidance)
    bundle = model if hasattr(model, "unet") else bgm_model(model)
    # a loop is cut to whole bars found by beat tracking: render enough for two bars at the plan's tempo
    length = max(seconds, 2 * LOOP_BAR_BEATS * 60.0 / plan.bpm + 0.5) if loop else seconds
    clip = generate_clip(bundle, plan.prompt, seconds=length, seed=seed, steps=steps, guidance=guidance,
                         negative=plan.negative, progress=progress)
    samples = _steady(make_loop(clip.samples, clip.sample_rate) if loop else clip.samples, clip.sample_rate, plan)
    return Clip(samples=samples, sample_rate=clip.sample_rate, image=clip.image,
                loop=LoopPoints(0, samples.size) if loop else None)


def render_transition(
    plan_from: MusicPlan, plan_to: MusicPlan, *, segments: int = 4, seed: int = 0,
    model: str | Path | ModelBundle | None = None, steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE,
    progress: bool = False,
) -> Clip:
    """One continuous piece moving from one mood to another over `segments` spectrogram tiles."""
    from charforge.audio.compose import Clip, transition

    _check(1.0, seed, steps, guidance)
    bundle = model if hasattr(model, "unet") else bgm_model(model)
    clip = transition(bundle, plan_from.prompt, plan_to.prompt, segments=segments, seed_from=seed, seed_to=seed + 1,
                      steps=steps, guidance=guidance, progress=progress)
    return Clip(samples=_steady(clip.samples, clip.sample_rate, plan_to), sample_rate=clip.sample_rate,
                image=clip.image)


def clip_bytes(clip: Clip, suffix: str = ".wav") -> bytes:
    """The encoded file of a clip (loop-tagged when the clip is a loop and the format has tags)."""
    from charforge.audio.audiofile import audio_bytes

    return audio_bytes(clip.samples, clip.sample_rate, suffix, clip.loop)


# characters -----------------------------------------------------------------------------------------


def _as_state(state: EmotionState | Mapping[str, float] | None, intensities: Mapping[str, float],
              character: Character) -> EmotionState:
    if state is not None and intensities:
        raise InvalidInput("give a state or emotion keywords, not both")
    if state is None:
        return EmotionState.from_mapping(intensities) if intensities else character.current_state()
    return state if isinstance(state, EmotionState) else EmotionState.from_mapping(state)


def character_plan(character: Character, state: EmotionState | Mapping[str, float] | None = None) -> MusicPlan:
    """What this character's music would be for `state` (None: its current state), without rendering."""
    table = mood_table(character.settings.get("music"))
    return plan_for_state(_as_state(state, {}, character), table)


def _cached(character: Character, key: str, build, params: dict[str, Any], suffix: str) -> tuple[Asset, bool]:
    asset = character.find_asset(AssetKind.BGM, key)
    if asset is not None:
        return asset, True
    clip = build()
    if clip.loop is not None:
        params = {**params, "loop_start": clip.loop.start, "loop_length": clip.loop.length}
    asset = character.add_asset(clip_bytes(clip, suffix), AssetKind.BGM, key, params, suffix=suffix)
    return asset, False


def _loop_of(asset: Asset) -> LoopPoints | None:
    params = asset.params or {}
    return LoopPoints(params["loop_start"], params["loop_length"]) if "loop_length" in params else None


def bgm(
    character: Character,
    state: EmotionState | Mapping[str, float] | None = None,
    *,
    seconds: float = DEFAULT_SECONDS,
    seed: int | None = None,
    loop: bool = False,
    steps: int = DEFAULT_STEPS,
    guidance: float = DEFAULT_GUIDANCE,
    format: str = DEFAULT_FORMAT,
    progress: bool = False,
    **intensities: float,
) -> BGMResult:
    """The character's music for `state` (None and no keywords: its current state), rendered once then cached.

    The seed defaults to the character's, so each character has its own tune for a mood. `format` is
    `wav`, `ogg` or `flac`; a `loop` in OGG/FLAC carries LOOPSTART/LOOPLENGTH tags.
    """
    table = mood_table(character.settings.get("music"))
    plan = plan_for_state(_as_state(state, intensities, character), table)
    seed = character.seed if seed is None else seed
    _check(seconds, seed, steps, guidance)
    suffix = check_format(format)
    model_hash = _bgm_model_hash(table.model)
    options = {"seconds": float(seconds), "seed": seed, "loop": loop, "steps": steps, "guidance": float(guidance),
               "format": suffix.lstrip(".")}
    key = canonical_hash({"what": "bgm", "version": KEY_VERSION, "plan": plan.to_dict(), "model": model_hash,
                          **options})
    params = {"plan": plan.to_dict(), "model_hash": model_hash, **options}
    asset, cached = _cached(
        character, key,
        lambda: render_plan(plan, seconds=seconds, seed=seed, loop=loop, model=table.model, steps=steps,
                            guidance=guidance, progress=progress),
        params, suffix,
    )  # fmt: skip
    rate, seconds = _audio_info(asset)
    return BGMResult(asset.path, plan, seconds, rate, cached, asset, key, loop=_loop_of(asset))


def bgm_transition(
    character: Character,
    to_state: EmotionState | Mapping[str, float],
    *,
    from_state: EmotionState | Mapping[str, float] | None = None,
    segments: int = 4,
    seed: int | None = None,
    steps: int = DEFAULT_STEPS,
    guidance: float = DEFAULT_GUIDANCE,
    format: str = DEFAULT_FORMAT,
    progress: bool = False,
) -> BGMResult:
    """Music that moves from `from_state` (None: the current one) to `to_state`, as one cached file."""
    table = mood_table(character.settings.get("music"))
    plan_from = plan_for_state(_as_state(from_state, {}, character), table)
    plan_to = plan_for_state(_as_state(to_state, {}, character), table)
    seed = character.seed if seed is None else seed
    _check(1.0, seed, steps, guidance)
    suffix = check_format(format)
    model_hash = _bgm_model_hash(table.model)
    options = {"segments": segments, "seed": seed, "steps": steps, "guidance": float(guidance),
               "format": suffix.lstrip(".")}
    key = canonical_hash({"what": "bgm-transition", "version": KEY_VERSION, "from": plan_from.to_dict(),
                          "to": plan_to.to_dict(), "model": model_hash, **options})
    params = {"plan": plan_from.to_dict(), "plan_to": plan_to.to_dict(), "model_hash": model_hash, **options}
    asset, cached = _cached(
        character, key,
        lambda: render_transition(plan_from, plan_to, segments=segments, seed=seed, model=table.model, steps=steps,
                                  guidance=guidance, progress=progress),
        params, suffix,
    )  # fmt: skip
    rate, seconds = _audio_info(asset)
    return BGMResult(asset.path, plan_from, seconds, rate, cached, asset, key, plan_to)


def _audio_info(asset: Asset) -> tuple[int, float]:
    """(sample rate, seconds) of a stored audio asset, read from its header only."""
    import soundfile as sf

    info = sf.info(str(asset.path))
    return int(info.samplerate), round(float(info.duration), 3)


def bgm_for_mood(
    valence: float, arousal: float, *, seconds: float = DEFAULT_SECONDS, seed: int = 0, loop: bool = False,
    model: str | Path | None = None, steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE,
    progress: bool = False,
) -> tuple[MusicPlan, Clip]:
    """Character-free music for a valence/arousal point (the shipped mood table)."""
    plan = plan_music(valence, arousal, mood_table())
    return plan, render_plan(plan, seconds=seconds, seed=seed, loop=loop, model=model, steps=steps,
                             guidance=guidance, progress=progress)
