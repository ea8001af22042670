"""Sketch-steered BGM (charforge.audio.steer and compose.generate_strip's `init`), on conftest's tiny
random model shaped like charforge-mini-bgm: parity with the engine's own img2img, the anchoring
algebra, and that the default render path is the steered one."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch

from charforge.audio import compose, steer
from charforge.audio.codec import SpectrogramCodec, get_preset
from charforge.audio.mood import SketchSettings, mood_table, plan_music
from charforge.character.bgm import music_table, render_plan
from charforge.engine import img2img, load_model
from charforge.errors import InvalidInput

MINI = get_preset("mini")
STEPS = 4
PLAN = plan_music(-0.6, 0.5)


@pytest.fixture(scope="module")
def spec_model(tiny_bgm_model_dir):
    return load_model(tiny_bgm_model_dir, device="cpu", dtype=torch.float32)


def _grey(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


@pytest.mark.slow
def test_a_steered_tile_is_the_engines_img2img_of_the_sketch(spec_model) -> None:
    sketch = steer.sketch_image(PLAN, 5, 2 * MINI.seconds_per_image, MINI)
    strip = compose.generate_strip(spec_model, PLAN.prompt, seconds=MINI.seconds_per_image, seed=5, steps=STEPS,
                                   init=sketch, strength=0.5)  # fmt: skip
    tile = sketch.crop((0, 0, MINI.width, MINI.n_mels)).convert("RGB")
    reference = img2img(spec_model, tile, PLAN.prompt, strength=0.5, seed=5, steps=STEPS, guidance=5.0)
    expected = (reference.pixels.float().mean(dim=1).clamp(0, 1) * 255).round()[0].numpy()
    assert np.array_equal(_grey(strip), expected)
    free = compose.generate_strip(spec_model, PLAN.prompt, seconds=MINI.seconds_per_image, seed=5, steps=STEPS)
    assert not np.array_equal(_grey(free), expected)


def test_the_init_strip_must_cover_the_tiles(spec_model) -> None:
    narrow = np.full((MINI.n_mels, MINI.width), 200, dtype=np.uint8)
    with pytest.raises(InvalidInput, match="columns"):
        compose.generate_strip(spec_model, PLAN.prompt, seconds=9.0, steps=STEPS, init=narrow, strength=0.5)
    with pytest.raises(InvalidInput, match="strength"):
        compose.generate_strip(spec_model, PLAN.prompt, seconds=2.0, steps=STEPS, init=narrow, strength=0.0)


def _log_mel(image) -> np.ndarray:
    return np.log(SpectrogramCodec(MINI).image_to_mel(image) + steer.FLOOR * MINI.max_value)


def test_anchoring_takes_the_fine_structure_from_the_sketch_and_the_envelope_from_the_drawing() -> None:
    rng = np.random.default_rng(0)
    rows = np.linspace(0, 1, MINI.n_mels)[:, None]
    drawn = np.clip(60 + 120 * rows + rng.normal(0, 25, (MINI.n_mels, 80)), 0, 255).astype(np.uint8)
    sketch = np.clip(200 - 120 * rows + rng.normal(0, 25, (MINI.n_mels, 80)), 0, 255).astype(np.uint8)
    settings = SketchSettings(pitch=1.0, envelope=0.0)
    out = steer.anchor_pitch(drawn, sketch, MINI, settings)
    sigma = settings.detail * MINI.n_mels
    smooth = lambda x: scipy.ndimage.gaussian_filter1d(x, sigma, axis=0, mode="nearest")  # noqa: E731
    lo, ld, ls = _log_mel(out), _log_mel(drawn), _log_mel(sketch)
    inner = slice(8, -8)  # away from the mel axis' ends, where the 8-bit image clips
    fine_err = np.abs((lo - smooth(lo)) - (ls - smooth(ls)))[inner].mean()
    fine_base = np.abs((ld - smooth(ld)) - (ls - smooth(ls)))[inner].mean()
    assert fine_err < 0.2 * fine_base, (fine_err, fine_base)
    env_err = np.abs(smooth(lo) - smooth(ld))[inner].mean()
    env_base = np.abs(smooth(ls) - smooth(ld))[inner].mean()
    assert env_err < 0.2 * env_base, (env_err, env_base)
    for pitch, envelope, target in ((0.0, 0.0, drawn), (1.0, 1.0, sketch)):
        same = steer.anchor_pitch(drawn, sketch, MINI, SketchSettings(pitch=pitch, envelope=envelope))
        assert np.abs(_grey(same) - target.astype(float)).max() <= 2


@pytest.mark.slow
def test_the_default_render_path_is_steered_and_can_be_turned_off(spec_model) -> None:
    assert PLAN.sketch == mood_table().sketch and PLAN.sketch.enabled
    free_plan = plan_music(-0.6, 0.5, music_table(None, sketch=False))
    assert free_plan.sketch is None and free_plan.prompt == PLAN.prompt
    steered = render_plan(PLAN, seconds=3.0, seed=2, model=spec_model, steps=STEPS)
    direct = steer.steered_clip(spec_model, PLAN, seconds=3.0, seed=2, steps=STEPS)
    free = render_plan(free_plan, seconds=3.0, seed=2, model=spec_model, steps=STEPS)
    unsteered = compose.generate_clip(spec_model, PLAN.prompt, seconds=3.0, seed=2, steps=STEPS)
    assert steered.samples.size == free.samples.size == round(3.0 * MINI.sample_rate)
    assert np.array_equal(steered.image, direct.image)
    assert np.array_equal(free.image, unsteered.image)
    assert not np.array_equal(steered.image, free.image)
