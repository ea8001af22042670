"""Emotion -> music plans: the shipped table speaks the BGM model's caption vocabulary, valence sets
the mode, arousal the tempo (in the prompt) and density, and a character's overrides are merged and validated."""

from __future__ import annotations

import numpy as np
import pytest

from charforge.audio.mood import mood_table, plan_for_state, plan_music
from charforge.emotion import EmotionState
from charforge.errors import InvalidInput
from charforge.recipes.bgm_mini.dataset import mood_prompt


def test_default_prompts_are_the_training_captions_mood_words():
    grid = np.linspace(-1.0, 1.0, 21)
    for v in grid:
        for a in grid:
            assert plan_music(float(v), float(a)).prompt == mood_prompt(float(v), float(a))


@pytest.mark.parametrize(("emotion", "mode"), [("joy", "major"), ("trust", "major"), ("sadness", "minor"),
                                               ("anger", "minor"), ("fear", "minor"), ("disgust", "minor")])
def test_valence_sign_sets_the_mode(emotion, mode):
    plan = plan_for_state(EmotionState(**{emotion: 0.9}))
    assert plan.mode == mode
    assert (plan.valence > 0) == (mode == "major")


def test_arousal_drives_tempo_density_and_the_prompt_continuously():
    plans = [plan_music(0.5, float(a)) for a in np.linspace(-1, 1, 21)]
    for key in ("bpm", "density"):
        values = [getattr(p, key) for p in plans]
        assert values == sorted(values) and values[0] < values[-1], key
    # arousal 0.5 and 0.9 ask for different music (the old table gave both "energetic", same prompt)
    prompts = [plan_music(0.3, a).prompt for a in (0.1, 0.5, 0.9)]
    assert len(set(prompts)) == 3
    tempi = [int(p.split(", ")[1].split()[0]) for p in prompts]
    assert tempi == sorted(tempi) and min(np.diff(tempi)) >= 15
    # neighbouring moods differ by at most one tempo step, so they ask for neighbouring music
    steps = [abs(int(a.prompt.split(", ")[1].split()[0]) - int(b.prompt.split(", ")[1].split()[0]))
             for a, b in zip(plans, plans[1:])]
    assert max(steps) <= 2 * mood_table().bpm_step
    excited, calm = plan_for_state(EmotionState(anger=0.9)), plan_for_state(EmotionState(sadness=0.9))
    assert excited.bpm - calm.bpm >= 30
    assert len({plan_music(v, 0.5).prompt for v in (-0.8, -0.3, 0.3, 0.8)}) == 4  # strength of valence is heard too


def test_every_plan_has_one_loudness_target():
    plans = [plan_music(float(v), float(a)) for v in (-0.8, 0.8) for a in (-0.9, 0.9)]
    assert {p.loudness_lufs for p in plans} == {-16.0} and {p.true_peak_dbtp for p in plans} == {-1.0}


def test_character_overrides_merge_into_the_table():
    base = plan_music(0.6, 0.0)
    table = mood_table({"lead": "pad", "arousal_offset": -0.5})
    tuned = plan_music(0.6, 0.0, table)
    assert "pad" in tuned.prompt and "piano" not in tuned.prompt
    assert tuned.bpm < base.bpm and tuned.arousal == pytest.approx(-0.5)
    riff = mood_table({"template": "{mood} {mode} music, {bpm} bpm",
                       "valence": {"words": ["a", "b", "c", "d"]}})
    assert plan_music(-0.9, 1.0, riff).prompt == "a minor music, 170 bpm"


@pytest.mark.parametrize("overrides", [
    {"tempo": 3},                                   # unknown field
    {"valence": {"bounds": [0.5, 0.0, 1.0, 1.0]}},  # not increasing
    {"arousal": {"words": ["only", "three", "words"]}},
    "loud",                                         # not a table
])
def test_bad_overrides_are_one_clear_error(overrides):
    with pytest.raises(InvalidInput, match="music"):
        mood_table(overrides)


def test_bad_points_and_templates_are_rejected():
    with pytest.raises(InvalidInput, match="valence"):
        plan_music(1.5, 0.0)
    with pytest.raises(InvalidInput, match="template"):
        plan_music(0.0, 0.0, mood_table({"template": "{colour} loop"}))


def test_neutral_plays_a_resting_mood_not_upbeat():
    """Issue #19: no feeling played "upbeat hopeful" (valence/arousal (0, 0) sit on band edges)."""
    neutral = plan_for_state(EmotionState.neutral())
    assert neutral.arousal < 0 and "upbeat" not in neutral.prompt
    assert neutral.bpm < plan_music(0.0, 0.0).bpm
    assert plan_for_state(EmotionState(joy=0.03)) == neutral  # below the neutral threshold (0.05): the same plan
    table = mood_table({"neutral": [-0.6, -0.8]})  # data, overridable per character
    moody = plan_for_state(EmotionState.neutral(), table)
    assert moody.mode == "minor" and moody.bpm < neutral.bpm
