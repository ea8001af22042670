"""Emotion state -> conditioning: the shipped table, overrides, gradual intensity and mixtures, quantisation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charforge.emotion import BASIS, EmotionState, emotion_table
from charforge.emotion.conditioning import conditioning, expression_table, swap_phrase
from charforge.errors import InvalidInput
from charforge.recipes.portrait_mini.render import EXPRESSIONS

BASE = "portrait of a girl with long red hair, green eyes, fair skin, blue outfit, pink background, looking calm"
THRESHOLD = emotion_table().neutral_threshold


def test_shipped_table_speaks_the_mini_models_words():
    table = expression_table()
    assert set(table.emotions) == set(BASIS)
    assert table.neutral_phrase == EXPRESSIONS["neutral"]
    known = set(EXPRESSIONS.values())
    assert all(e.phrase in known for e in table.emotions.values())
    # every emotion the mini model can draw is drawn with its own caption phrase
    for name, phrase in EXPRESSIONS.items():
        if name != "neutral":
            assert table.emotions[name].phrase == phrase


def test_neutral_state_is_the_base_prompt():
    cond = conditioning(EmotionState(), BASE)
    assert cond.is_neutral and cond.blend() == [(BASE, 1.0)] and cond.target_prompt == BASE
    below = conditioning(EmotionState(joy=THRESHOLD / 2), BASE)
    assert below.is_neutral


def test_single_emotion_swaps_the_expression_slot_word_for_word():
    cond = conditioning({"joy": 1.0}, BASE)
    assert cond.target_prompt == BASE.replace("looking calm", "smiling happily")
    assert len(cond.target_prompt.split()) == len(BASE.split())  # a Prompt-to-Prompt word swap
    assert cond.neutral_blend == 0.0 and cond.attention_weight == pytest.approx(expression_table().intensity.weight_at_max)


def test_intensity_moves_the_blend_then_the_attention_weight_monotonically():
    spec = expression_table().intensity
    values = [round(0.05 * k, 2) for k in range(1, 21)]
    conds = [conditioning({"sadness": v}, BASE) for v in values]
    shares = [c.terms[0].blend if c.terms else 0.0 for c in conds]
    weights = [c.attention_weight for c in conds]
    assert all(a <= b for a, b in zip(shares, shares[1:])) and shares[-1] == 1.0
    assert all(a <= b for a, b in zip(weights, weights[1:]))
    # below full_at only the blend moves; above it only the attention weight does
    assert all(w == spec.weight_at_full for v, w in zip(values, weights) if v <= spec.full_at)
    assert all(s == 1.0 for v, s in zip(values, shares) if v >= spec.full_at)
    # gradual: no step of 0.05 in intensity moves the blend by more than 0.05 / (full_at - threshold)
    limit = 0.05 / (spec.full_at - THRESHOLD) + 1e-9
    assert max(b - a for a, b in zip(shares, shares[1:])) <= limit


def test_mixtures_blend_several_phrases_with_weights_that_sum_to_one():
    cond = conditioning({"joy": 0.8, "fear": 0.3}, BASE)
    phrases = [t.phrase for t in cond.terms]
    assert phrases == ["smiling happily", "trembling fearfully"]  # strongest first
    assert sum(w for _, w in cond.blend()) == pytest.approx(1.0)
    assert cond.terms[0].blend > cond.terms[1].blend > 0
    weak = conditioning({"joy": 0.3, "fear": 0.2}, BASE)
    assert weak.neutral_blend > 0 and sum(w for _, w in weak.blend()) == pytest.approx(1.0)


def test_at_most_max_mixture_emotions_take_part():
    everything = dict.fromkeys(BASIS, 0.9)
    cond = conditioning(everything, BASE)
    assert len(cond.terms) == expression_table().max_mixture


def test_emotions_sharing_a_phrase_add_up():
    # trust borrows joy's smile at half scale; together they make a stronger smile than joy alone
    alone = conditioning({"joy": 0.3}, BASE)
    together = conditioning({"joy": 0.3, "trust": 0.4}, BASE)
    assert [t.emotions for t in together.terms] == [("joy", "trust")]
    assert together.terms[0].intensity == pytest.approx(0.3 + 0.4 * expression_table().emotions["trust"].scale)
    assert together.terms[0].blend > alone.terms[0].blend


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(BASIS), st.floats(0, 1), max_size=4))
def test_blend_is_a_convex_combination_and_quantisation_is_idempotent(values):
    cond = conditioning(values, BASE)
    weights = [w for _, w in cond.blend()]
    assert all(w >= 0 for w in weights) and sum(weights) == pytest.approx(1.0)
    again = conditioning(cond.state, BASE)
    assert again.state == cond.state and again.to_dict() == cond.to_dict()


def test_nearby_states_quantise_to_the_same_conditioning():
    assert conditioning({"joy": 0.81}, BASE).to_dict() == conditioning({"joy": 0.8}, BASE).to_dict()
    assert conditioning({"joy": 0.81}, BASE).to_dict() != conditioning({"joy": 0.9}, BASE).to_dict()
    coarse = expression_table({"quantization": 0.25})
    assert conditioning({"joy": 0.8}, BASE, coarse).state == EmotionState(joy=0.75)


def test_per_character_overrides_merge_into_the_shipped_table():
    table = expression_table({"emotions": {"joy": {"phrase": "grinning widely"}}, "neutral_phrase": "looking calm"})
    assert table.emotions["joy"].phrase == "grinning widely"
    assert table.emotions["fear"].phrase == expression_table().emotions["fear"].phrase  # untouched
    assert conditioning({"joy": 1.0}, BASE, table).target_prompt.endswith("grinning widely")


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"emotions": {"glee": {"phrase": "x"}}}, "glee"),
        ({"emotions": {"joy": {"phrase": ""}}}, "phrase"),
        ({"emotions": {"joy": {"scale": 2}}}, "scale"),
        ({"quantization": 0}, "quantization"),
        ({"max_mixture": 7}, "max_mixture"),
        ({"intensity": {"full_at": -1}}, "full_at"),
        ({"colour": "red"}, "colour"),
        ("joy", "table"),
    ],
)
def test_bad_overrides_are_one_clear_error(override, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        expression_table(override)


def test_swap_phrase_replaces_whole_words_or_appends():
    assert swap_phrase("a girl, looking calm", "looking calm", "crying sadly") == "a girl, crying sadly"
    assert swap_phrase("a girl, Looking Calm", "looking calm", "crying sadly") == "a girl, crying sadly"
    assert swap_phrase("a girl, overlooking calmly", "looking calm", "x y") == "a girl, overlooking calmly, x y"
    assert swap_phrase("a girl,", "looking calm", "crying sadly") == "a girl, crying sadly"


def test_describe_and_dict_name_phrases_and_weights():
    cond = conditioning({"anger": 0.9, "disgust": 0.4}, BASE)
    text = cond.describe()
    assert "frowning angrily" in text and "grimacing disgustedly" in text
    data = cond.to_dict()
    assert data["dominant"] == "anger" and [t["phrase"] for t in data["terms"]][0] == "frowning angrily"
    assert data["vad"]["valence"] < 0
