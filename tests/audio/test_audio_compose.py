"""Longer BGM: continued clips, seamless loops and mood transitions (charforge.audio.compose).

The model here is conftest's tiny random one shaped like charforge-mini-bgm (64 x 256 spectrogram
tiles through a 4x VAE): its music is noise-like, which is enough for lengths, determinism, parity with
the engine's own txt2img/img2img and continuity at joins. Loops are checked on procedural music,
whose tempo is known exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from charforge.audio import compose
from charforge.audio.codec import SpectrogramCodec, get_preset
from charforge.audio.levels import DEFAULT_PEAK
from charforge.engine import img2img, load_model, txt2img
from charforge.errors import InvalidInput
from charforge.recipes.bgm_mini import music

MINI = get_preset("mini")
W, SR, HOP = MINI.width, MINI.sample_rate, MINI.hop_length
STEPS = 3
CALM, LIVELY = "calm sad piano loop", "upbeat happy piano loop"


@pytest.fixture(scope="module")
def spec_model(tiny_bgm_model_dir):
    """conftest's random model whose native image is one `mini` tile (64 x 256), loaded like a real one."""
    return load_model(tiny_bgm_model_dir, device="cpu", dtype=torch.float32)


def _grey(generation) -> np.ndarray:
    """An engine result as the 8-bit grey spectrogram a strip stores."""
    return (generation.pixels.float().mean(dim=1).clamp(0, 1) * 255).round().byte().numpy()[0].astype(int)


def _pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=int)


# -- clips ------------------------------------------------------------------------------------


def test_preset_follows_the_model_size(spec_model, tiny_model) -> None:
    assert compose.preset_for(spec_model) == MINI
    with pytest.raises(InvalidInput, match="32x32"):
        compose.preset_for(tiny_model)
    with pytest.raises(InvalidInput, match="32x32"):
        compose.generate_clip(tiny_model, CALM, seconds=2.0, steps=1)


@pytest.mark.slow
@pytest.mark.parametrize("seconds", [2.0, 13.0])
def test_clip_has_the_requested_length_and_is_peak_safe(spec_model, seconds) -> None:
    clip = compose.generate_clip(spec_model, CALM, seconds=seconds, steps=STEPS)
    assert clip.sample_rate == SR
    assert clip.samples.dtype == np.float32 and clip.samples.size == round(seconds * SR)
    assert clip.image.mode == "L" and clip.image.size == (math.ceil(seconds * SR / HOP), MINI.n_mels)
    assert float(np.abs(clip.samples).max()) <= DEFAULT_PEAK + 1e-6
    assert np.std(clip.samples) > 1e-3  # music, not silence


@pytest.mark.slow
def test_first_tile_is_txt2img_and_continuing_keeps_what_was_there(spec_model) -> None:
    one = _pixels(compose.generate_strip(spec_model, CALM, seconds=MINI.seconds_per_image, steps=STEPS))
    longer = _pixels(compose.generate_strip(spec_model, CALM, seconds=13.0, steps=STEPS, overlap=0.25))
    other = _pixels(compose.generate_strip(spec_model, CALM, seconds=MINI.seconds_per_image, steps=STEPS, seed=9))
    reference = _grey(txt2img(spec_model, CALM, seed=0, steps=STEPS, guidance=5.0, width=W, height=MINI.n_mels))
    assert one.shape == (MINI.n_mels, W) and np.array_equal(one, reference)

    keep = W // 4
    # Columns before the overlap come from tile 1 alone: continuing does not touch them.
    assert np.array_equal(longer[:, : W - keep], one[:, : W - keep])
    # In the overlap tile 2 was held to tile 1's latents, so the cross-fade mixes two decodes of
    # the same music; had the hold failed, it would mix in unrelated music (as another seed is).
    agree = np.abs(longer[:, W - keep : W] - one[:, W - keep :]).mean()
    unrelated = np.abs(other[:, W - keep :] - one[:, W - keep :]).mean()
    assert agree < 0.15 * unrelated, (agree, unrelated)
    # Tile 2's new columns are new music, not a copy of tile 1.
    assert np.abs(longer[:, W : 2 * W - keep] - one[:, keep:]).mean() > 0.5 * unrelated


@pytest.mark.slow
def test_same_arguments_same_samples_and_the_seed_matters(spec_model) -> None:
    first = compose.generate_clip(spec_model, CALM, seconds=8.0, steps=2, seed=3)
    again = compose.generate_clip(spec_model, CALM, seconds=8.0, steps=2, seed=3)
    other = compose.generate_clip(spec_model, CALM, seconds=8.0, steps=2, seed=4)
    assert np.array_equal(first.samples, again.samples)
    assert np.array_equal(_pixels(first.image), _pixels(again.image))
    assert not np.array_equal(_pixels(first.image), _pixels(other.image))


def test_independent_tiles_without_overlap(spec_model) -> None:
    strip = _pixels(compose.generate_strip(spec_model, CALM, seconds=8.0, steps=STEPS, overlap=0.0))
    one = _pixels(compose.generate_strip(spec_model, CALM, seconds=MINI.seconds_per_image, steps=STEPS))
    assert np.array_equal(strip[:, :W], one)  # no cross-fade when nothing is held
    assert strip.shape[1] == math.ceil(8.0 * SR / HOP)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"seconds": 0.0}, "seconds"),
        ({"seconds": -1.0}, "seconds"),
        ({"seconds": float("nan")}, "seconds"),
        ({"seconds": 1e6}, "seconds"),
        ({"seconds": 2.0, "overlap": 1.0}, "overlap"),
        ({"seconds": 2.0, "overlap": -0.1}, "overlap"),
        ({"seconds": 2.0, "steps": 0}, "steps"),
        ({"seconds": 2.0, "seed": -1}, "seed"),
        ({"seconds": 2.0, "preset": "nope"}, "preset"),
        ({"seconds": 2.0, "preset": MINI.model_copy(update={"n_mels": 66})}, "VAE factor"),
    ],
)
def test_bad_clip_arguments_are_named(spec_model, kwargs, word) -> None:
    from charforge.errors import CharforgeError

    with pytest.raises(CharforgeError, match=word):
        compose.generate_clip(spec_model, CALM, **kwargs)


# -- loops ------------------------------------------------------------------------------------


def _assert_seamless(clip: np.ndarray, loop: np.ndarray, bpm: float | None) -> None:
    steps = np.abs(np.diff(clip))
    seam = abs(float(loop[0]) - float(loop[-1]))
    assert seam <= np.median(steps), (seam, np.median(steps))
    # Played twice in a row, nothing (seam or cross-fade) jumps more than the clip itself ever does.
    around = np.abs(np.diff(np.concatenate([loop[-SR // 10 :], loop[: SR // 10]])))
    assert around.max() <= steps.max() + 1e-6
    if bpm is None:
        return
    bars = loop.size / (4 * 60.0 / bpm * SR)
    assert round(bars) >= 1 and abs(bars - round(bars)) < 0.01, bars


@pytest.mark.slow
@pytest.mark.parametrize(
    "bpm, mode, lead, offset",
    [(70, "minor", "piano", 0.37), (123, "major", "pluck", 1.1), (140, "minor", "pad", 0.05)],
)
def test_loop_is_whole_bars_with_a_seam_smoother_than_the_music(bpm, mode, lead, offset) -> None:
    spec = music.MusicSpec(tonic=5, mode=mode, bpm=bpm, lead=lead, density=0.6, seed=4)
    clip = music.render(spec, MINI.seconds_per_image + 1.0, SR, offset=offset)
    _assert_seamless(clip, compose.make_loop(clip, SR), bpm)


@pytest.mark.slow
def test_loop_of_decoded_spectrogram_music() -> None:
    """Griffin-Lim output (what generated clips are) loops as cleanly as the synthesised original."""
    codec = SpectrogramCodec("mini")
    spec = music.MusicSpec(tonic=0, mode="major", bpm=100, lead="pluck", density=0.5, seed=1)
    decoded = codec.image_to_audio(codec.audio_to_image(music.render(spec, 7.0, SR)), seed=0)
    _assert_seamless(decoded, compose.make_loop(decoded, SR), 100)


@pytest.mark.slow
def test_loop_of_a_generated_clip(spec_model) -> None:
    clip = compose.generate_clip(spec_model, LIVELY, seconds=8.0, steps=2)
    loop = compose.make_loop(clip.samples, clip.sample_rate)
    assert 2 * SR < loop.size < clip.samples.size
    _assert_seamless(clip.samples, loop, None)  # random weights: seam only, the tempo means nothing


@pytest.mark.slow
def test_loop_refuses_what_cannot_loop() -> None:
    spec = music.MusicSpec(tonic=0, mode="major", bpm=90, seed=1)
    with pytest.raises(InvalidInput, match="at least 2 s"):
        compose.make_loop(music.render(spec, 1.0, SR), SR)
    with pytest.raises(InvalidInput, match="silent"):
        compose.make_loop(np.zeros(5 * SR, dtype=np.float32), SR)
    with pytest.raises(InvalidInput, match="no whole bar"):
        compose.make_loop(music.render(spec, 3.0, SR), SR, beats_per_bar=8)  # one 8-beat bar is 5.3 s
    with pytest.raises(InvalidInput, match="beats_per_bar"):
        compose.make_loop(music.render(spec, 3.0, SR), SR, beats_per_bar=0)
    with pytest.raises(InvalidInput, match="mono"):
        compose.make_loop(np.zeros((2, 3 * SR), dtype=np.float32), SR)


# -- transitions ------------------------------------------------------------------------------


@pytest.mark.slow
def test_transition_runs_from_one_state_to_the_other_in_one_continuous_file(spec_model) -> None:
    segments = 3
    clip = compose.transition(spec_model, CALM, LIVELY, segments=segments, seed_from=0, seed_to=1, steps=4)
    strip = _pixels(clip.image)
    assert strip.shape == (MINI.n_mels, segments * W)
    assert clip.samples.size == segments * W * HOP and clip.sample_rate == SR

    # First segment: the seed image (txt2img of the first prompt) redrawn by img2img for that prompt;
    # last: exactly the target prompt's own txt2img. Both compared with the engine's own functions.
    seed_image = txt2img(spec_model, CALM, seed=0, steps=4, guidance=5.0, width=W, height=MINI.n_mels)
    first = img2img(spec_model, seed_image.pixels, CALM, seed=0, steps=4, guidance=5.0, strength=0.75)
    last = txt2img(spec_model, LIVELY, seed=1, steps=4, guidance=5.0, width=W, height=MINI.n_mels)
    assert np.array_equal(strip[:, :W], _grey(first))
    assert np.array_equal(strip[:, -W:], _grey(last))
    # The middle segment lies between its neighbours: closer to each than they are to each other.
    ends = np.abs(strip[:, :W] - strip[:, -W:]).mean()
    assert np.abs(strip[:, W : 2 * W] - strip[:, :W]).mean() < ends
    assert np.abs(strip[:, W : 2 * W] - strip[:, -W:]).mean() < ends

    # One decode of the whole strip: no step at a segment boundary stands out from the music.
    steps = np.abs(np.diff(clip.samples))
    near = np.zeros(steps.size, dtype=bool)
    for boundary in range(1, segments):
        near[boundary * W * HOP - 32 : boundary * W * HOP + 32] = True
    assert steps[near].max() <= np.percentile(steps[~near], 99.9)


def test_transition_arguments(spec_model) -> None:
    with pytest.raises(InvalidInput, match="segments"):
        compose.transition(spec_model, CALM, LIVELY, segments=1, steps=1)
    with pytest.raises(InvalidInput, match="strength"):
        compose.transition(spec_model, CALM, LIVELY, segments=2, steps=2, strength=0.0)
    with pytest.raises(InvalidInput, match="seed image"):
        compose.transition(spec_model, CALM, LIVELY, segments=2, steps=2, seed_image=np.zeros((64, 100)))
    with pytest.raises(InvalidInput, match="no step"):
        compose.transition(spec_model, CALM, LIVELY, segments=2, steps=1, strength=0.5)


def test_slerp_keeps_the_norm_of_gaussian_noise() -> None:
    a, b = torch.randn(4, 16, 64, generator=torch.Generator().manual_seed(0)), torch.randn(
        4, 16, 64, generator=torch.Generator().manual_seed(1)
    )
    middle = compose.slerp(a, b, 0.5)
    assert abs(float(middle.norm() / a.norm()) - 1) < 0.02
    assert float(((a + b) / 2).norm() / a.norm()) < 0.75  # what a plain average would do
    assert compose.slerp(a, b, 0.0) is a and compose.slerp(a, b, 1.0) is b


@pytest.mark.slow
@pytest.mark.parametrize("bpm, seconds", [(70, 5.0), (123, 4.0), (140, 6.2)])
def test_a_loop_asked_for_seconds_is_the_fewest_whole_bars_that_long(bpm, seconds) -> None:
    """Never less than asked (issue #19): rounded up to whole bars at the tempo heard, never down."""
    spec = music.MusicSpec(tonic=2, mode="major", bpm=bpm, lead="piano", density=0.6, seed=3)
    clip = music.render(spec, seconds + 2 * 4 * 60.0 / bpm + 1.0, SR, offset=0.2)
    loop = compose.make_loop(clip, SR, min_seconds=seconds)
    bar = 4 * 60.0 / bpm
    assert loop.size >= seconds * SR
    assert loop.size < (seconds + bar) * SR + 0.01 * SR  # one bar more at most
    _assert_seamless(clip, loop, bpm)


@pytest.mark.slow
def test_a_loop_longer_than_the_clip_holds_is_refused() -> None:
    spec = music.MusicSpec(tonic=2, mode="major", bpm=120, lead="piano", density=0.6, seed=3)
    with pytest.raises(InvalidInput, match="whole bar"):
        compose.make_loop(music.render(spec, 5.0, SR), SR, min_seconds=5.0)


@pytest.mark.slow
def test_a_character_loop_is_at_least_the_seconds_asked(spec_model) -> None:
    from charforge.audio.mood import mood_table, plan_music
    from charforge.character.bgm import render_plan

    plan = plan_music(0.5, 0.3, mood_table())
    for seconds in (3.0, 5.5):
        clip = render_plan(plan, seconds=seconds, loop=True, model=spec_model, steps=2)
        assert clip.samples.size >= seconds * clip.sample_rate
