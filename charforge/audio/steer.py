"""Sketch-steered BGM: the default path from a mood plan to music, Riffusion's seed-image recipe.

1. The plan's sketch (`charforge.audio.seeding`: its mode, exact tempo, density, brightness; the
   clip's seed picks the key) is rendered to audio and encoded with the model's own codec preset.
2. The model redraws that spectrogram strip by img2img at the settings' `strength`
   (`compose.generate_strip` with `init`: tiles continued by outpainting as usual). The sketch's
   onsets survive a moderate strength, so the tempo is the plan's, continuous in arousal.
3. Pitch anchoring on the decoded image, in log-mel magnitude: a latent model's autoencoder blurs
   the frequency axis (charforge-mini-bgm's 4x VAE reconstructs a sketch's minor third as often
   major as minor), so the fine spectral structure, the harmonic peaks that carry the key, is taken
   from the sketch (`pitch`), while the coarse envelope, the model's timbre and dynamics, is the
   model's, mixed with `envelope` of the sketch's. Fine and coarse are split by a Gaussian along
   the mel axis `detail` of its height wide, so the same settings fit any preset (64 or 512 bins).

Nothing here knows which model it steers: the preset follows the model's image size and the
prompt is the plan's, so a Riffusion checkpoint is steered the same way.
"""

from __future__ import annotations

import math

import numpy as np
import PIL.Image
import scipy.ndimage

from charforge.audio.codec import SpectrogramCodec, SpectrogramPreset
from charforge.audio.compose import Clip, generate_strip, preset_for
from charforge.audio.levels import limit_peak
from charforge.audio.mood import MusicPlan, SketchSettings
from charforge.audio.seeding import sketch_audio, sketch_for
from charforge.engine.loading import ModelBundle
from charforge.errors import InvalidInput

#: Magnitudes below this share of the preset's reference level count as silence in log-mel.
FLOOR = 1e-3


def sketch_image(plan: MusicPlan, seed: int, seconds: float, preset: SpectrogramPreset) -> PIL.Image.Image:
    """The plan's sketch, `seconds` long, as a spectrogram image of `preset`."""
    sketch = sketch_for(plan.mode, plan.bpm, plan.density, plan.valence, seed)
    return SpectrogramCodec(preset).audio_to_image(sketch_audio(sketch, seed, seconds, preset.sample_rate))


def anchor_pitch(
    drawn: PIL.Image.Image | np.ndarray, sketch: PIL.Image.Image | np.ndarray, preset: SpectrogramPreset,
    settings: SketchSettings,
) -> PIL.Image.Image:
    """The drawn spectrogram with the sketch's fine structure (`pitch`) and part of its envelope.

    In log magnitude L, with C the Gaussian smoothing along mel: the result is
    C(Ld) + envelope * (C(Ls) - C(Ld)) + (Ld - C(Ld)) + pitch * ((Ls - C(Ls)) - (Ld - C(Ld))).
    `pitch = envelope = 0` returns the drawn image; both 1 return the sketch.
    """
    codec = SpectrogramCodec(preset)
    drawn_mel, sketch_mel = codec.image_to_mel(drawn), codec.image_to_mel(sketch)
    if drawn_mel.shape != sketch_mel.shape:
        raise InvalidInput(f"drawn {drawn_mel.shape} and sketch {sketch_mel.shape} spectrograms differ in size")
    floor = FLOOR * preset.max_value
    log_d, log_s = np.log(drawn_mel + floor), np.log(sketch_mel + floor)
    sigma = settings.detail * preset.n_mels
    coarse_d = scipy.ndimage.gaussian_filter1d(log_d, sigma, axis=0, mode="nearest")
    coarse_s = scipy.ndimage.gaussian_filter1d(log_s, sigma, axis=0, mode="nearest")
    fine_d, fine_s = log_d - coarse_d, log_s - coarse_s
    mixed = coarse_d + settings.envelope * (coarse_s - coarse_d) + fine_d + settings.pitch * (fine_s - fine_d)
    return codec.mel_to_image(np.maximum(np.exp(mixed) - floor, 0.0))


def steered_clip(
    model: ModelBundle, plan: MusicPlan, *, seconds: float, seed: int = 0, steps: int = 20, guidance: float = 5.0,
    settings: SketchSettings | None = None, progress: bool = False,
) -> Clip:
    """`seconds` of the plan's music: its sketch redrawn by the model, pitch-anchored, decoded as one strip."""
    settings = settings or plan.sketch or SketchSettings()
    preset = preset_for(model)
    # the tiles reach at most one tile past `seconds`; the sketch is a loop, so any length is seamless
    sketch = sketch_image(plan, seed, seconds + preset.seconds_per_image, preset)
    # img2img runs int(steps * strength) of the schedule; a very short schedule still runs one step
    steps = max(steps, math.ceil(1.0 / settings.strength))
    drawn = generate_strip(model, plan.prompt, seconds=seconds, seed=seed, steps=steps, guidance=guidance,
                           negative=plan.negative, preset=preset, progress=progress, init=sketch,
                           strength=settings.strength)  # fmt: skip
    sketch = sketch.crop((0, 0, drawn.width, preset.n_mels))
    strip = anchor_pitch(drawn, sketch, preset, settings) if settings.pitch or settings.envelope else drawn
    n_samples = max(1, round(seconds * preset.sample_rate))
    samples = SpectrogramCodec(preset).image_to_audio(strip, seed=seed, high_band=plan.high_band)[:n_samples]
    return Clip(limit_peak(samples), preset.sample_rate, strip)
