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
from charforge.audio.mood import MoodTable, MusicPlan, mood_table, plan_for_state, plan_music
from charforge.canonical import canonical_hash
from charforge.emotion.state import EmotionState
from charforge.errors import InvalidInput, ModelLoadError
from charforge.store import AssetKind
from charforge.store.records import Asset

if TYPE_CHECKING:
    from charforge.audio.compose import Clip
    from charforge.character.protocol import Character
    from charforge.engine.loading import ModelBundle

log = logging.getLogger(__name__)

KEY_VERSION = 4  # 2: loops rounded up to whole bars; 3: loudness target, formats; 4: sketch-steered by default
DEFAULT_FORMAT = "wav"
DEFAULT_SECONDS = 10.0
MAX_SECONDS = 300.0
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 5.0
LOOP_BAR_BEATS = 4


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
    from charforge.engine.cache import cached_model
    from charforge.engine.loading import default_bgm_model_path

    if ref is None:
        ref = default_bgm_model_path()
        if not (ref / "model_index.json").is_file():
            raise ModelLoadError(f"the default BGM model is not installed at {ref}; pass a BGM model folder")
    return cached_model(ref)


def _bgm_model_hash(ref: str | Path | None) -> str:
    from charforge.models import default_bgm_model_path, weights_hash

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


def music_table(overrides: Mapping[str, Any] | None = None, sketch: bool = True) -> MoodTable:
    """The mood table with a character's `settings["music"]`; `sketch=False` turns sketch steering off."""
    return mood_table(overrides if sketch else {**(overrides or {}), "sketch": {"enabled": False}})


def _steady(samples: np.ndarray, sample_rate: int, plan: MusicPlan) -> np.ndarray:
    """The plan's loudness target under its true-peak ceiling (see `charforge.audio.loudness`)."""
    return normalize_loudness(samples, sample_rate, plan.loudness_lufs, plan.true_peak_dbtp)


def render_plan(
    plan: MusicPlan, *, seconds: float = DEFAULT_SECONDS, seed: int = 0, loop: bool = False,
    model: str | Path | ModelBundle | None = None, steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE,
    progress: bool = False,
) -> Clip:
    """Music for one plan (no character, nothing stored).

    A plan with `sketch` settings (the default) is steered by its composed sketch
    (`charforge.audio.steer`); without, the model draws from the prompt alone.

    `loop` returns a seamless loop of whole bars lasting at least `seconds`: the fewest 4-beat bars,
    at the tempo beat tracking hears in the rendered music, that are that long (so up to one bar
    more than asked, never less).
    """
    from charforge.audio.compose import Clip, generate_clip, make_loop
    from charforge.audio.steer import steered_clip

    _check(seconds, seed, steps, guidance)
    bundle = model if hasattr(model, "unet") else bgm_model(model)

    def render(length: float) -> Clip:
        if plan.sketch is not None:
            return steered_clip(bundle, plan, seconds=length, seed=seed, steps=steps, guidance=guidance,
                                progress=progress)
        return generate_clip(bundle, plan.prompt, seconds=length, seed=seed, steps=steps, guidance=guidance,
                             negative=plan.negative, progress=progress, high_band=plan.high_band)

    if not loop:
        clip = render(seconds)
        return Clip(samples=_steady(clip.samples, clip.sample_rate, plan), sample_rate=clip.sample_rate,
                    image=clip.image)
    # a bar and a half more than asked at the plan's tempo: room to round up and to start on a beat
    length = seconds + 1.5 * LOOP_BAR_BEATS * 60.0 / plan.bpm + 0.5
    clip = render(length)
    try:
        samples = make_loop(clip.samples, clip.sample_rate, beats_per_bar=LOOP_BAR_BEATS, min_seconds=seconds)
    except InvalidInput:  # the tempo heard is slower than planned (say, half time): once more, twice as long
        log.info("the music holds too few bars at the tempo heard; rendering %.1f s for the loop", 2 * length)
        clip = render(2 * length)
        samples = make_loop(clip.samples, clip.sample_rate, beats_per_bar=LOOP_BAR_BEATS, min_seconds=seconds)
    samples = _steady(samples, clip.sample_rate, plan)
    return Clip(samples=samples, sample_rate=clip.sample_rate, image=clip.image, loop=LoopPoints(0, samples.size))


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


def character_plan(character: Character, state: EmotionState | Mapping[str, float] | None = None) -> MusicPlan:
    """What this character's music would be for `state` (None: its current state), without rendering."""
    table = mood_table(character.settings.get("music"))
    return plan_for_state(EmotionState.coerce(state, default=character.current_state()), table)


def _cached(character: Character, key: str, build, params: dict[str, Any]) -> tuple[Asset, bool]:
    asset = character.store.find_asset(AssetKind.BGM, key)
    if asset is not None:
        return asset, True
    clip = build()
    if clip.loop is not None:
        params = {**params, "loop_start": clip.loop.start, "loop_length": clip.loop.length}
    suffix = "." + params["format"]
    asset = character.store.add_asset(clip_bytes(clip, suffix), AssetKind.BGM, key, params, suffix=suffix)
    return asset, False


def _loop_of(asset: Asset) -> LoopPoints | None:
    params = asset.params or {}
    return LoopPoints(params["loop_start"], params["loop_length"]) if "loop_length" in params else None


def bgm_key(
    character: Character, state: EmotionState, *, seconds: float = DEFAULT_SECONDS, seed: int | None = None,
    loop: bool = False, steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE, format: str = DEFAULT_FORMAT,
    sketch: bool = True,
) -> tuple[str, MusicPlan, dict[str, Any]]:
    """(cache key, plan, stored parameters) of the character's music for `state`, without rendering."""
    table = music_table(character.settings.get("music"), sketch)
    plan = plan_for_state(state, table)
    seed = character.seed if seed is None else seed
    _check(seconds, seed, steps, guidance)
    suffix = check_format(format)
    model_hash = _bgm_model_hash(table.model)
    options = {"seconds": float(seconds), "seed": seed, "loop": loop, "steps": steps, "guidance": float(guidance),
               "format": suffix.lstrip(".")}
    key = canonical_hash(
        {"what": "bgm", "version": KEY_VERSION, "plan": plan.to_dict(), "model": model_hash, **options}
    )
    return key, plan, {"plan": plan.to_dict(), "model_hash": model_hash, **options}


def find_bgm(
    character: Character, state: EmotionState | Mapping[str, float] | None = None, *, seconds: float = DEFAULT_SECONDS,
    seed: int | None = None, loop: bool = False, steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE,
    format: str = DEFAULT_FORMAT, sketch: bool = True,
) -> BGMResult | None:
    """The stored music `bgm` would return for these arguments, or None; never renders."""
    key, plan, _ = bgm_key(character, EmotionState.coerce(state, default=character.current_state()),
                           seconds=seconds, seed=seed, loop=loop, steps=steps, guidance=guidance,
                           format=format, sketch=sketch)  # fmt: skip
    asset = character.store.find_asset(AssetKind.BGM, key)
    if asset is None:
        return None
    rate, length = _audio_info(asset)
    return BGMResult(asset.path, plan, length, rate, True, asset, key, loop=_loop_of(asset))


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
    sketch: bool = True,
    **intensities: float,
) -> BGMResult:
    """The character's music for `state` (None and no keywords: its current state), rendered once then cached.

    The seed defaults to the character's, so each character has its own tune for a mood. `format` is
    `wav`, `ogg` or `flac`; a `loop` in OGG/FLAC carries LOOPSTART/LOOPLENGTH tags. `sketch=False`
    lets the model draw from the prompt alone (as does `sketch.enabled = false` in the settings).
    """
    table = mood_table(character.settings.get("music"))
    key, plan, params = bgm_key(character, EmotionState.coerce(state, intensities, default=character.current_state()),
                                seconds=seconds, seed=seed, loop=loop, steps=steps, guidance=guidance,
                                format=format, sketch=sketch)  # fmt: skip
    seed = params["seed"]
    asset, cached = _cached(
        character, key,
        lambda: render_plan(plan, seconds=seconds, seed=seed, loop=loop, model=table.model, steps=steps,
                            guidance=guidance, progress=progress),
        params,
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
    plan_from = plan_for_state(EmotionState.coerce(from_state, default=character.current_state()), table)
    plan_to = plan_for_state(EmotionState.coerce(to_state), table)
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
        params,
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
    progress: bool = False, sketch: bool = True,
) -> tuple[MusicPlan, Clip]:
    """Character-free music for a valence/arousal point (the shipped mood table; `sketch=False`: unsteered)."""
    plan = plan_music(valence, arousal, music_table(None, sketch))
    return plan, render_plan(plan, seconds=seconds, seed=seed, loop=loop, model=model, steps=steps,
                             guidance=guidance, progress=progress)
