"""Procedural music: deterministic, seamless loops, captions, levels and validated specs."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from charforge.errors import InvalidInput
from charforge.recipes.bgm_mini import music

SR = 22050


def _spec(**kw: object) -> music.MusicSpec:
    base: dict[str, object] = dict(tonic=9, mode="minor", bpm=70, lead="piano", density=0.5, seed=4)
    base.update(kw)
    return music.MusicSpec(**base)


def test_same_spec_renders_identical_samples_and_seed_changes_them() -> None:
    a = music.render(_spec(), 3.0, SR)
    assert np.array_equal(a, music.render(_spec(), 3.0, SR))
    assert not np.array_equal(a, music.render(_spec(seed=5), 3.0, SR))


@pytest.mark.parametrize("lead", ["pad", "pluck", "piano"])
def test_loop_seam_has_no_click(lead: str) -> None:
    spec = _spec(lead=lead, bpm=123, density=0.9)
    loop = music.render_loop(spec, SR)
    assert loop.size == round(spec.loop_seconds * SR)
    steps = np.abs(np.diff(loop))
    seam = abs(float(loop[0]) - float(loop[-1]))
    assert seam <= np.percentile(steps, 99)
    # Rendering past the end continues the loop exactly.
    twice = music.render(spec, 2 * spec.loop_seconds, SR)
    assert np.array_equal(twice[loop.size : 2 * loop.size - 10], loop[: loop.size - 10])


def test_offset_starts_inside_the_loop() -> None:
    spec = _spec()
    loop = music.render_loop(spec, SR)
    clip = music.render(spec, 1.0, SR, offset=1.5)
    start = round(1.5 * SR)
    assert np.array_equal(clip, loop[start : start + SR])


def test_loudness_scales_level_and_never_clips() -> None:
    quiet = music.render_loop(_spec(loudness=0.1), SR)
    loud = music.render_loop(_spec(loudness=1.0), SR)
    assert np.sqrt(np.mean(loud**2)) > 3 * np.sqrt(np.mean(quiet**2))
    assert np.max(np.abs(loud)) <= 1.0


@pytest.mark.slow
def test_density_adds_notes() -> None:
    sparse, busy = _spec(density=0.1, drums=False, bass=False), _spec(density=0.9, drums=False, bass=False)
    assert (sparse.notes_per_beat, busy.notes_per_beat) == (1, 4)
    assert _spec(density=0.9, bpm=150).notes_per_beat == 2  # no sixteenths at fast tempi

    def onsets(y: np.ndarray) -> int:
        return len(librosa.onset.onset_detect(y=y, sr=SR))

    assert onsets(music.render_loop(busy, SR)) > 2 * onsets(music.render_loop(sparse, SR))


def test_random_spec_is_reproducible_and_respects_fixed_fields() -> None:
    a = music.random_spec(np.random.default_rng(3), mode="major", bpm=90.0)
    b = music.random_spec(np.random.default_rng(3), mode="major", bpm=90.0)
    assert a == b and a.mode == "major" and a.bpm == 90.0
    specs = [music.random_spec(np.random.default_rng(i)) for i in range(40)]
    assert {s.mode for s in specs} == {"major", "minor"}
    assert min(s.bpm for s in specs) < 90 and max(s.bpm for s in specs) > 150


@pytest.mark.parametrize(
    ("fields", "word"),
    [(dict(bpm=200), "bpm"), (dict(mode="dorian"), "mode"), (dict(progression=9), "progression"), (dict(tonic=12), "tonic")],
)
def test_checked_spec_rejects_bad_values_with_one_clear_error(fields: dict, word: str) -> None:
    base = dict(tonic=0, mode="major", bpm=100)
    base.update(fields)
    with pytest.raises(InvalidInput, match=word):
        music.MusicSpec.checked(**base)


def test_render_rejects_bad_lengths() -> None:
    with pytest.raises(InvalidInput, match="seconds"):
        music.render(_spec(), 0.0, SR)
    with pytest.raises(InvalidInput, match="sample rate"):
        music.render(_spec(), 1.0, 4000)


@pytest.mark.slow  # renders and analyses 24 six-second clips
def test_an_independent_listener_hears_the_labelled_mode() -> None:
    """Key profiles over librosa's chroma_cqt (no code shared with the generator) read the labelled
    mode and tonic of clean renders: 6-second windows at random offsets of random specs."""
    from charforge.recipes.bgm_mini.listeners import estimate_keys

    rng = np.random.default_rng(0)
    mode_hits, tonic_hits, n = {}, {}, 24
    for _ in range(n):
        spec = music.random_spec(rng)
        y = music.render(spec, 6.0, SR, offset=float(rng.uniform(0, spec.loop_seconds)))
        for name, key in estimate_keys(y, SR).items():
            mode_hits[name] = mode_hits.get(name, 0) + (key.mode == spec.mode)
            tonic_hits[name] = tonic_hits.get(name, 0) + (key.tonic == spec.tonic)
    assert min(mode_hits.values()) >= n - 1, mode_hits
    assert min(tonic_hits.values()) >= n - 2, tonic_hits


@pytest.mark.slow
def test_minor_keys_use_the_harmonic_minor_leading_tone_and_the_bass_holds_the_tonic() -> None:
    spec = _spec(tonic=9, mode="minor", drums=False, lead="pluck")  # A minor: G# is the leading tone
    chroma = librosa.feature.chroma_cqt(y=music.render_loop(spec, SR), sr=SR).mean(axis=1)
    assert chroma[8] > 1.5 * chroma[7]  # G# sounds, G (natural minor's 7th) hardly
    low = librosa.feature.chroma_cqt(y=music.render_loop(_spec(drums=False, lead="pad"), SR), sr=SR,
                                     fmin=librosa.note_to_hz("C2"), n_octaves=1).mean(axis=1)
    assert int(np.argmax(low)) == 9  # the bass octave's strongest pitch class is the tonic


@pytest.mark.slow
def test_brightness_raises_the_melody_and_the_timbre() -> None:
    def centroid(brightness: float) -> float:
        y = music.render_loop(_spec(brightness=brightness, drums=False, bass=False), SR)
        return float(librosa.feature.spectral_centroid(y=y, sr=SR).mean())

    assert centroid(0.9) > 1.2 * centroid(0.1)
