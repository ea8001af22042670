"""Sketches that steer the default BGM path (charforge.audio.seeding), heard by the eval's independent
listeners (librosa chroma + published key profiles, librosa tempo), which share no code with the composer."""

from __future__ import annotations

import pytest

from charforge.audio import seeding
from charforge.audio.mood import plan_music
from charforge.errors import InvalidInput
from charforge.recipes.bgm_mini import evaluate, listeners

SR = 22050


@pytest.mark.slow
@pytest.mark.parametrize(("tonic", "mode"), [(0, "minor"), (2, "major"), (5, "minor"), (8, "major"),
                                             (9, "minor"), (11, "major"), (3, "minor"), (6, "major")])
def test_the_sketch_is_heard_in_its_key(tonic, mode) -> None:
    sketch = seeding.Sketch(tonic=tonic, mode=mode, bpm=130.0, density=0.7, brightness=0.5)
    chroma = listeners.mean_chroma(seeding.sketch_audio(sketch, 3, 8.0, SR), SR)
    for profile in ("kk", "temperley"):
        key = listeners.profile_key(chroma, profile)
        assert (key.tonic, key.mode) == (tonic, mode), (profile, key.name)


@pytest.mark.slow
@pytest.mark.parametrize("arousal", [-0.6, 0.1, 0.5, 0.9])
def test_the_sketch_plays_the_plans_continuous_tempo(arousal) -> None:
    plan = plan_music(0.3, arousal)
    sketch = seeding.sketch_for(plan.mode, plan.bpm, plan.density, plan.valence, seed=1)
    loop = seeding.render_sketch(sketch, 1, SR)
    assert loop.size == round(16 * 60.0 / plan.bpm * SR)  # four bars of four beats, exactly
    y = seeding.sketch_audio(sketch, 1, 10.0, SR)
    for name, track in listeners.TEMPO_TRACKERS.items():
        assert track(y, SR) == pytest.approx(plan.bpm, rel=0.035), name


@pytest.mark.slow
def test_every_mood_of_the_grid_gets_its_own_sketch() -> None:
    """Same seed, different moods: never identical, never a gain-scaled copy (valence moves the mode
    and the brightness, arousal the tempo and density)."""
    clips = {}
    for v in evaluate.VALENCES:
        for a in evaluate.AROUSALS:
            plan = plan_music(v, a)
            sketch = seeding.sketch_for(plan.mode, plan.bpm, plan.density, plan.valence, seed=9001)
            clips[(v, a, "piano", 9001)] = seeding.sketch_audio(sketch, 9001, 4.0, SR)
    similar = evaluate._distinct_moods(clips)
    assert similar["min_gain_residual"] > 0.2 and similar["max_abs_correlation"] < 0.95, similar


def test_the_seed_picks_the_key_and_the_melody() -> None:
    keys = {seeding.sketch_for("minor", 120.0, 0.5, -0.5, seed).tonic for seed in range(40)}
    assert len(keys) >= 8
    a = seeding.melody(seeding.Sketch(0, "major", 120.0, 0.8, 0.5), seed=1)
    assert a == seeding.melody(seeding.Sketch(0, "major", 120.0, 0.8, 0.5), seed=1)
    assert a != seeding.melody(seeding.Sketch(0, "major", 120.0, 0.8, 0.5), seed=2)
    # the tonic chord opens and closes home; the bar before the last tonic ends on the leading tone
    assert (a[0][1] - 0) % 12 == 0 and (a[-1][1] - 0) % 12 == 0
    last_dominant = [n for beat, n, _ in a if 8 <= beat < 12][-1]
    assert last_dominant % 12 == 11


def test_bad_sketches_are_one_clear_error() -> None:
    with pytest.raises(InvalidInput, match="mode"):
        seeding.Sketch(0, "dorian", 120.0, 0.5, 0.5)
    with pytest.raises(InvalidInput, match="bpm"):
        seeding.Sketch(0, "major", 0.0, 0.5, 0.5)
    with pytest.raises(InvalidInput, match="seconds"):
        seeding.sketch_audio(seeding.Sketch(0, "major", 120.0, 0.5, 0.5), 0, 0.0, SR)
