"""EmotionState: validation, aliases, canonical hashing, VAD and CLI token parsing."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charforge.emotion import BASIS, EmotionState, emotion_table
from charforge.errors import InvalidInput

PLUTCHIK = ["joy", "trust", "fear", "surprise", "sadness", "disgust", "anger", "anticipation"]

# The label set of GoEmotions (Demszky et al., 2020), written out here independently of the shipped table.
GOEMOTIONS = [
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity", "desire",
    "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear", "gratitude", "grief",
    "joy", "love", "nervousness", "optimism", "pride", "realization", "relief", "remorse", "sadness",
    "surprise", "neutral",
]


def test_basis_is_plutchiks_eight():
    assert list(BASIS) == PLUTCHIK
    assert list(EmotionState().intensities()) == PLUTCHIK


def test_default_is_neutral():
    s = EmotionState()
    assert s.is_neutral and s.dominant == "neutral"
    assert s.vad() == (0.0, 0.0, 0.0)
    assert str(s) == "neutral"


def test_low_intensities_count_as_neutral_and_high_do_not():
    threshold = emotion_table().neutral_threshold
    assert EmotionState(joy=threshold / 2, fear=threshold / 2).is_neutral
    assert not EmotionState(joy=min(1.0, threshold * 2)).is_neutral


def test_common_aliases():
    assert EmotionState(happy=0.8) == EmotionState(joy=0.8)
    assert EmotionState(angry=0.5) == EmotionState(anger=0.5)
    assert EmotionState(HAPPY=0.8) == EmotionState(joy=0.8)  # case-insensitive


def test_all_28_goemotions_labels_are_accepted():
    assert len(GOEMOTIONS) == 28
    for label in GOEMOTIONS:
        state = EmotionState(**{label: 1.0})
        if label == "neutral":
            assert state.is_neutral
        else:
            assert not state.is_neutral, label
            assert max(state.intensities().values()) <= 1.0
        if label in PLUTCHIK:
            assert state.dominant == label


def test_alias_blends_scale_with_intensity_and_combine_by_max():
    strong, weak = EmotionState(love=1.0), EmotionState(love=0.5)
    for name, value in strong.components().items():
        assert weak.intensities()[name] == pytest.approx(value * 0.5, abs=1e-4)
    assert len(strong.components()) >= 2  # love is a blend (Plutchik: joy + trust)
    combined = EmotionState(joy=0.2, love=1.0)
    assert combined.joy == max(0.2, strong.joy)
    assert EmotionState(love=1.0, joy=0.2) == combined  # order does not matter


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"jyo": 0.5}, "unknown emotion 'jyo'"),
        ({"hunger": 0.5}, "unknown emotion"),
        ({"joy": 1.5}, "within [0, 1]"),
        ({"joy": -0.1}, "within [0, 1]"),
        ({"joy": math.nan}, "NaN"),
        ({"joy": math.inf}, "within [0, 1]"),
        ({"joy": True}, "must be a number"),
        ({"joy": "lots"}, "must be a number"),
        ({"joy": None}, "must be a number"),
        ({"happy": 2.0}, "happy"),
    ],
)
def test_invalid_states_raise_invalid_input_naming_the_problem(values, fragment):
    with pytest.raises(InvalidInput) as info:
        EmotionState(**values)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(InvalidInput, match="did you mean 'surprise'"):
        EmotionState(suprise=0.3)


def test_states_are_frozen():
    with pytest.raises(ValueError, match="frozen"):
        EmotionState(joy=0.5).joy = 0.1  # type: ignore[misc]


intensity = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
states = st.dictionaries(st.sampled_from(PLUTCHIK), intensity, max_size=8)


@settings(max_examples=60, deadline=None)
@given(states, st.randoms())
def test_canonical_hash_is_order_independent(values, rnd):
    items = list(values.items())
    rnd.shuffle(items)
    a, b = EmotionState(**values), EmotionState(**dict(items))
    assert a.canonical_hash() == b.canonical_hash()
    assert a.canonical_json() == b.canonical_json()


def test_hash_ignores_float_noise_and_explicit_zeros_but_not_real_differences():
    base = EmotionState(joy=0.8).canonical_hash()
    assert EmotionState(joy=0.8 + 1e-9).canonical_hash() == base
    assert EmotionState(joy=0.8, fear=0.0).canonical_hash() == base
    assert EmotionState(happy=0.8).canonical_hash() == base
    assert EmotionState(joy=0.81).canonical_hash() != base
    assert EmotionState(joy=0.8, fear=0.01).canonical_hash() != base


def test_hash_is_stable_across_processes():
    # A cache key must survive restarts: no dependence on PYTHONHASHSEED or on insertion order.
    import subprocess
    import sys

    code = "from charforge.emotion import EmotionState as E; print(E(fear=0.25, happy=0.5).canonical_hash())"
    hashes = {
        subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                       capture_output=True, text=True, check=True).stdout.strip()
        for seed in ("1", "2")
    }
    assert hashes == {EmotionState(joy=0.5, fear=0.25).canonical_hash()}


def test_vad_signs_and_monotonicity():
    joy, sad, angry, fear = (EmotionState(**{n: 1.0}).vad() for n in ("joy", "sadness", "anger", "fear"))
    assert joy.valence > 0 > sad.valence
    assert angry.arousal > sad.arousal
    assert angry.dominance > fear.dominance
    valences = [EmotionState(joy=x).vad().valence for x in (0.0, 0.25, 0.5, 1.0)]
    assert valences == sorted(valences) and valences[0] == 0.0
    for v in EmotionState(joy=1, sadness=1, anger=1).vad():
        assert -1.0 <= v <= 1.0


@settings(max_examples=60, deadline=None)
@given(states)
def test_vad_is_bounded_and_continuous_at_neutral(values):
    state = EmotionState(**values)
    vad = state.vad()
    assert all(-1.0 <= v <= 1.0 for v in vad)
    peak = max(state.intensities().values())
    assert all(abs(v) <= peak + 1e-9 for v in vad)  # fades to (0, 0, 0) as every intensity does


def test_dominant_is_the_strongest():
    assert EmotionState(joy=0.3, sadness=0.7).dominant == "sadness"


def test_parse_tokens():
    assert EmotionState.parse_tokens(["joy=0.8", "fear=0.2"]) == EmotionState(joy=0.8, fear=0.2)
    assert EmotionState.parse_tokens(["happy=1"]) == EmotionState(joy=1.0)
    assert EmotionState.parse_tokens([" joy = 0.5 "]) == EmotionState(joy=0.5)


@pytest.mark.parametrize(
    ("tokens", "fragment"),
    [
        (["joy"], "malformed"),
        (["joy="], "malformed"),
        (["=0.5"], "malformed"),
        (["joy=0.5=1"], "malformed"),
        (["joy=abc"], "not a number"),
        (["joy=nan"], "NaN"),
        (["joy=1.01"], "within [0, 1]"),
        (["joy=0.2", "joy=0.3"], "twice"),
        (["glee=0.4"], "unknown emotion"),
    ],
)
def test_parse_tokens_rejects_bad_input(tokens, fragment):
    with pytest.raises(InvalidInput, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        EmotionState.parse_tokens(tokens)


def test_quantized_snaps_to_the_grid():
    q = EmotionState(joy=0.83, fear=0.02, anger=0.99).quantized(0.05)
    assert q == EmotionState(joy=0.85, fear=0.0, anger=1.0)
    assert EmotionState(joy=0.81).quantized(0.05) == EmotionState(joy=0.82).quantized(0.05)
    with pytest.raises(InvalidInput):
        EmotionState(joy=0.5).quantized(0)


def test_table_aliases_only_target_the_basis():
    table = emotion_table()
    for alias, weights in table.aliases.items():
        assert alias not in PLUTCHIK
        assert set(weights) <= set(PLUTCHIK), alias
