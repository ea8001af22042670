"""Key/mode and tempo estimators, checked on ideal chroma and on procedural clips of known labels.

These estimators are the yardstick of the BGM model's evaluation, so they must first recover the
labels of music whose key and tempo are known by construction.
"""

from __future__ import annotations

import numpy as np
import pytest

from charforge.audio import analysis
from charforge.errors import InvalidInput
from charforge.recipes.bgm_mini import music

SR = 22050


def _indicator(*pitch_classes: int) -> np.ndarray:
    chroma = np.zeros(12)
    chroma[list(pitch_classes)] = 1.0
    return chroma


@pytest.mark.parametrize(
    ("pitch_classes", "name"),
    [((0, 4, 7), "C major"), ((9, 0, 4), "A minor"), ((7, 11, 2), "G major"), ((2, 5, 9), "D minor")],
)
def test_triads_name_their_key(pitch_classes: tuple[int, ...], name: str) -> None:
    assert analysis.key_from_chroma(_indicator(*pitch_classes)).name == name


def test_mode_margin_is_signed_towards_the_winner() -> None:
    major = analysis.key_from_chroma(_indicator(0, 4, 7))
    assert major.mode_margin > 0 and -1 <= major.correlation <= 1


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["major", "minor"])
@pytest.mark.parametrize("bpm", [70, 140])
@pytest.mark.parametrize("lead", ["pad", "pluck"])
def test_fixed_procedural_clips_measure_as_labelled(mode: str, bpm: int, lead: str) -> None:
    spec = music.MusicSpec(tonic=4, mode=mode, bpm=bpm, lead=lead, density=0.5, seed=2)
    y = music.render(spec, 6.0, SR)
    key = analysis.estimate_key(y, SR)
    assert (key.tonic, key.mode) == (4, mode)
    assert analysis.estimate_tempo(y, SR) == pytest.approx(bpm, rel=0.06)


@pytest.mark.slow  # renders and analyses 12 six-second clips
def test_random_procedural_clips_measure_as_labelled() -> None:
    """Random keys, tempi, timbres, densities and start offsets: the estimators must be reliable."""
    rng = np.random.default_rng(2024)
    mode_hits = tempo_hits = 0
    count = 12
    for _ in range(count):
        spec = music.random_spec(rng)
        y = music.render(spec, 6.0, SR, offset=float(rng.uniform(0, spec.loop_seconds)))
        mode_hits += analysis.estimate_key(y, SR).mode == spec.mode
        tempo_hits += abs(analysis.estimate_tempo(y, SR) - spec.bpm) <= 0.06 * spec.bpm
    assert mode_hits >= count - 1
    assert tempo_hits >= count - 1


def test_estimators_reject_unusable_audio() -> None:
    with pytest.raises(InvalidInput, match="at least"):
        analysis.estimate_tempo(np.ones(SR, dtype=np.float32), SR)
    with pytest.raises(InvalidInput, match="silent"):
        analysis.estimate_key(np.zeros(SR * 3, dtype=np.float32), SR)
    with pytest.raises(InvalidInput, match="12 chroma"):
        analysis.key_from_chroma(np.ones(7))
