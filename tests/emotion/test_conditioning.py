"""Emotion state -> conditioning: the shipped table, overrides, gradual intensity and mixtures, quantisation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charforge.emotion import BASIS, EmotionState, emotion_table
from charforge.emotion.calibration import Calibration, Curve, Point, load_calibration, save_calibration
from charforge.emotion.conditioning import conditioning, expression_table, swap_phrase
from charforge.errors import InvalidInput
from charforge.recipes.portrait_mini.population import sample_portraits
from charforge.recipes.portrait_mini.render import EXPRESSIONS, INTENSITY_WORDS, JOINER

BASE = "portrait of a girl with long red hair, green eyes, fair skin, blue outfit, pink background, looking calm"
PER_EMOTION_ONLY = expression_table({"edit": {"compound_share": 0.0}})
THRESHOLD = emotion_table().neutral_threshold


def test_shipped_table_speaks_the_mini_models_words():
    table = expression_table()
    assert set(table.emotions) == set(BASIS)
    assert table.neutral_phrase == EXPRESSIONS["neutral"]
    # every basis emotion has its own face and its own caption phrase in the mini model
    for name in BASIS:
        assert table.emotions[name].phrase == EXPRESSIONS[name]
    assert [w.word for w in table.words] == [word for _, word in INTENSITY_WORDS]
    assert table.joiner == JOINER


def test_conditioning_prompt_is_the_renderers_caption_of_the_same_state():
    """The composed prompt is word for word what the model was trained on for that face."""
    person = next(iter(sample_portraits(3, 1, held_out=None))).with_expression("neutral", 0.0)
    for state in ({"joy": 0.3}, {"anger": 0.5, "disgust": 0.5}, {"joy": 0.7, "surprise": 0.3, "fear": 0.9},
                  {"trust": 1.0}, {"anticipation": 0.15}):
        cond = conditioning(state, person.caption())
        assert cond.target_prompt == person.with_state(state).caption()


def test_neutral_state_is_the_base_prompt():
    cond = conditioning(EmotionState(), BASE)
    assert cond.is_neutral and cond.target_prompt == BASE and cond.token_weights() == {}
    below = conditioning(EmotionState(joy=THRESHOLD / 2), BASE)
    assert below.is_neutral


def test_one_prompt_per_state_never_an_average():
    """A mixture is one composed prompt; nothing asks for embeddings of several prompts to be mixed."""
    cond = conditioning({"anger": 0.5, "disgust": 0.5}, BASE)
    assert not hasattr(cond, "blend") and cond.target_prompt.count("looking calm") == 0
    assert cond.target_prompt.endswith("moderately grimacing disgustedly and moderately frowning angrily")
    assert set(cond.token_weights()) == {"moderately grimacing disgustedly", "moderately frowning angrily"}


def test_mixture_order_is_fixed_whatever_the_strengths():
    a = conditioning({"joy": 0.9, "surprise": 0.3}, BASE).target_prompt.split()
    b = conditioning({"joy": 0.3, "surprise": 0.9}, BASE).target_prompt.split()
    assert len(a) == len(b)
    differing = [k for k, (x, y) in enumerate(zip(a, b)) if x != y]
    assert len(differing) == 2  # only the two intensity words swap: a Prompt-to-Prompt word swap aligns
    assert {a[k] for k in differing} == {"extremely", "slightly"}


def test_intensity_word_grows_with_intensity_uncalibrated():
    words = [t.word for t in (conditioning({"sadness": 0.05 * k}, BASE).terms[0] for k in range(1, 21))]
    order = [w.word for w in expression_table().words]
    ranks = [order.index(w) for w in words]
    assert ranks == sorted(ranks) and ranks[0] == 0 and ranks[-1] == len(order) - 1


def _calibration(points: dict[str, list[tuple[str, float, float]]]) -> Calibration:
    return Calibration(model_hash="x", method="judge", emotions={
        e: Curve(points=[Point(word=w, attention=a, response=r) for w, a, r in pts], calm=0.0)
        for e, pts in points.items()})


def test_calibration_maps_requests_monotonically_onto_measured_settings():
    # "very" at 1.4 reads weaker than at 1.0, and "extremely" at 0.7 weaker than calm: measured noise
    cal = _calibration({"joy": [("faintly", 1.0, 0.1), ("slightly", 1.0, 0.3), ("slightly", 1.4, 0.45),
                                ("very", 1.0, 0.8), ("very", 1.4, 0.7), ("extremely", 1.0, 1.0),
                                ("extremely", 0.7, -0.1)]})
    chain = cal.chain("joy")
    assert [round(level, 2) for level, _ in chain] == [0.1, 0.3, 0.45, 0.7, 0.8, 1.0]
    settings_ = [cal.setting("joy", k / 20) for k in range(1, 21)]
    # the chosen setting never reads weaker for a stronger request (same word: interpolated weight)
    def read(s):
        word, att, strength = s
        assert strength == 1.0  # curves over words and weights keep the full edit
        same = sorted((p.attention, level) for level, p in chain if p.word == word)
        return float(np.interp(att, [x for x, _ in same], [y for _, y in same]))
    reads = [read(s) for s in settings_]
    assert all(a <= b + 1e-9 for a, b in zip(reads, reads[1:]))
    assert settings_[-1][:2] == ("extremely", 1.0) and settings_[0][:2] == ("faintly", 1.0)
    # equal perceived steps: a request reads as itself wherever the chain is measured
    assert reads[7] == pytest.approx(0.4, abs=1e-6) and reads[11] == pytest.approx(0.6, abs=0.125 + 1e-9)  # between words: the nearer one


def test_conditioning_uses_the_calibration_when_given():
    cal = _calibration({"anger": [("slightly", 0.7, 0.2), ("slightly", 1.4, 0.5), ("extremely", 1.0, 1.0)]})
    cond = conditioning({"anger": 0.35, "joy": 0.5}, BASE, calibration=cal)
    anger = next(t for t in cond.terms if t.emotions == ("anger",))
    joy = next(t for t in cond.terms if t.emotions == ("joy",))
    assert anger.word == "slightly" and 0.7 < anger.attention < 1.4 and cond.calibrated
    assert (joy.word, joy.attention) == ("moderately", 1.0)  # not measured: the table's reading


def _strength_calibration(points: dict[str, list[tuple[float, float]]], calm: float = 0.0) -> Calibration:
    return Calibration(model_hash="x", method="face-change", emotions={
        e: Curve(points=[Point(word="extremely", attention=1.0, strength=s, response=r) for s, r in pts], calm=calm)
        for e, pts in points.items()})


def test_a_strength_curve_starts_at_calm_and_stops_at_its_peak():
    # the response peaks at strength 0.4 and falls after it (measured so on charforge-mini)
    cal = _strength_calibration({"joy": [(0.05, 0.3), (0.1, 0.5), (0.2, 0.8), (0.4, 1.0), (0.7, 0.9)]}, calm=0.1)
    strengths = [cal.setting("joy", k / 20)[2] for k in range(0, 21)]
    assert strengths[0] == 0.0  # nothing asked: the calm face
    assert all(a < b for a, b in zip(strengths, strengths[1:]))  # more asked, more drawn
    assert strengths[-1] == pytest.approx(0.4)  # never past the peak
    # equal perceived steps: 0.5 of the way (response 0.55 above calm 0.1 of the top 0.9) is strength 0.1 + ...
    level = (0.5 - 0.1) / 0.9
    assert cal.setting("joy", level)[2] == pytest.approx(0.1)
    assert cal.setting("joy", level / 2)[2] == pytest.approx(0.05 * (level / 2) / ((0.3 - 0.1) / 0.9))


def test_a_strength_curve_ends_at_its_knee_where_more_strength_reads_no_stronger():
    # past 0.3 the response creeps up by 1.5%: full intensity is drawn at 0.3, not at twice the change
    cal = _strength_calibration({"joy": [(0.1, 0.5), (0.2, 0.9), (0.3, 0.985), (0.6, 1.0)]})
    assert [p.strength for _, p in cal.chain("joy")] == [0.1, 0.2, 0.3]
    assert cal.setting("joy", 1.0)[2] == pytest.approx(0.3)
    assert cal.setting("joy", 0.9 / 0.985)[2] == pytest.approx(0.2)  # levels count from the knee
    # a curve still rising by more than the plateau keeps its last point
    steep = _strength_calibration({"joy": [(0.1, 0.5), (0.2, 0.9), (0.3, 0.97), (0.6, 1.0)]})
    assert steep.setting("joy", 1.0)[2] == pytest.approx(0.6)


def test_strength_calibrations_compose_one_branch_per_emotion():
    cal = _strength_calibration({e: [(0.1, 0.5), (0.3, 1.0)] for e in ("anger", "disgust", "joy")})
    cond = conditioning({"anger": 0.7, "disgust": 0.3}, BASE, PER_EMOTION_ONLY, calibration=cal)
    assert cond.composed and cond.calibrated
    branches = {b.prompt.rsplit(", ", 1)[1]: b for b in cond.branches()}
    assert set(branches) == {"extremely frowning angrily", "extremely grimacing disgustedly"}
    assert branches["extremely frowning angrily"].strength > branches["extremely grimacing disgustedly"].strength > 0
    for b in cond.branches():  # each branch is the base prompt with only its own expression
        assert b.prompt.startswith(BASE.rsplit(", ", 1)[0]) and list(b.weights) == [b.prompt.rsplit(", ", 1)[1]]
    single = conditioning({"joy": 0.5}, BASE, calibration=cal)
    assert len(single.branches()) == 1 and 0 < single.branches()[0].strength < 0.3
    plain = conditioning({"anger": 0.7, "disgust": 0.3}, BASE)  # uncalibrated: one prompt at full strength
    assert not plain.composed and [b.strength for b in plain.branches()] == [1.0]
    assert plain.branches()[0].prompt == plain.target_prompt


def test_a_composed_mixture_gives_each_face_part_to_the_emotion_that_shows_most_there():
    cal = _strength_calibration({e: [(0.1, 0.5), (0.3, 1.0)] for e in BASIS})
    sharp = expression_table({"edit": {"compound_share": 0.0, "part_sharpness": 4.0}})
    cond = conditioning({"anger": 0.5, "disgust": 0.5}, BASE, sharp, calibration=cal)
    parts = {b.prompt.rsplit(", ", 1)[1]: b.parts for b in cond.branches()}
    anger, disgust = parts["extremely frowning angrily"], parts["extremely grimacing disgustedly"]
    assert anger["upper"] == 1.0 and disgust["lower"] == 1.0  # angry brows over a disgusted mouth
    assert disgust["upper"] < 0.1 and anger["lower"] < 0.1
    weaker = conditioning({"anger": 0.3, "disgust": 0.7}, BASE, sharp, calibration=cal)
    weak_parts = {b.prompt.rsplit(", ", 1)[1]: b.parts for b in weaker.branches()}
    assert weak_parts == parts  # intensity is each branch's strength, not counted again in its parts
    single = conditioning({"anger": 0.5}, BASE, calibration=cal)
    assert single.branches()[0].parts == {}  # one emotion draws the whole face
    # the sharpness sets how much the other emotion keeps: in proportion to how much it shows there at 1
    table = sharp.edit.model_copy(update={"part_sharpness": 1.0})
    linear = conditioning({"anger": 0.5, "disgust": 0.5}, BASE, sharp.model_copy(update={"edit": table}), cal)
    lin = {b.prompt.rsplit(", ", 1)[1]: b.parts for b in linear.branches()}
    shows = sharp.emotions
    assert lin["extremely grimacing disgustedly"]["upper"] == pytest.approx(
        shows["disgust"].parts["upper"] / shows["anger"].parts["upper"])
    assert disgust["upper"] < lin["extremely grimacing disgustedly"]["upper"] < 1.0


@pytest.mark.parametrize("share", [0.25, 0.5, 0.75])
def test_a_compound_share_splits_a_mixture_between_its_composed_prompt_and_its_emotions(share):
    cal = _strength_calibration({e: [(0.1, 0.5), (0.3, 1.0)] for e in BASIS})
    state = {"anger": 0.7, "disgust": 0.3}
    alone = {b.prompt: b for b in conditioning(state, BASE, PER_EMOTION_ONLY, calibration=cal).branches()}
    cond = conditioning(state, BASE, expression_table({"edit": {"compound_share": share}}), calibration=cal)
    whole, *rest = cond.branches()
    assert whole.prompt == cond.target_prompt and whole.parts == {}  # the composed prompt draws the whole face
    assert whole.strength == pytest.approx(share * max(t.strength for t in cond.terms))
    assert {b.prompt for b in rest} == set(alone)
    for b in rest:  # each emotion keeps its own strength and parts, scaled by the rest of the change
        assert b.strength == pytest.approx((1 - share) * alone[b.prompt].strength) and b.parts == alone[b.prompt].parts
    single = conditioning({"anger": 0.7}, BASE, expression_table({"edit": {"compound_share": share}}), calibration=cal)
    assert [b.prompt for b in single.branches()] != [cond.target_prompt] and len(single.branches()) == 1
    assert single.branches()[0].strength == alone[next(p for p in alone if "angrily" in p)].strength


def test_a_full_compound_share_draws_a_mixture_with_its_one_composed_prompt():
    cal = _strength_calibration({e: [(0.1, 0.5), (0.3, 1.0)] for e in BASIS})
    cond = conditioning({"joy": 0.4, "surprise": 0.6}, BASE, expression_table({"edit": {"compound_share": 1.0}}), cal)
    (whole,) = cond.branches()
    assert whole.prompt == cond.target_prompt and whole.strength == max(t.strength for t in cond.terms)


def test_an_unlike_emotion_is_drawn_away_from_unless_the_state_asks_for_it():
    cal = _strength_calibration({e: [(0.1, 0.5), (0.3, 1.0)] for e in BASIS})
    table = expression_table({"emotions": {"fear": {"unlike": {"sadness": 0.4}}}, "edit": {"compound_share": 0.0}})
    cond = conditioning({"fear": 0.8}, BASE, table, calibration=cal)
    (fear,) = cond.terms
    assert fear.unlike == (("extremely crying sadly", 0.4),)
    assert fear.to_dict()["unlike"] == [["extremely crying sadly", 0.4]]  # part of the cached picture's key
    plain_fear = conditioning({"fear": 0.8}, BASE, calibration=cal).terms[0]
    assert "unlike" not in plain_fear.to_dict()  # a table without it keeps every stored picture's key
    toward, away = cond.branches()
    assert away.prompt.endswith(", extremely crying sadly") and away.strength == pytest.approx(-0.4 * toward.strength)
    assert away.weights == {} and away.parts == toward.parts
    mixed = conditioning({"fear": 0.6, "sadness": 0.4}, BASE, table, calibration=cal)  # sadness asked for
    assert all(b.strength > 0 for b in mixed.branches()) and len(mixed.branches()) == 2
    assert conditioning({"fear": 0.8}, BASE, table).branches()[0].strength == 1.0  # uncalibrated: one prompt
    for bad in ({"joy": 1.5}, {"joy": 0.0}, {"pride": 0.3}):
        with pytest.raises(InvalidInput):
            expression_table({"emotions": {"fear": {"unlike": bad}}})


def test_calibration_round_trips_through_json(tmp_path):
    cal = _calibration({"fear": [("very", 1.0, 0.6)]})
    path = save_calibration(cal, tmp_path)
    assert load_calibration(tmp_path) == cal and path.name == "emotion_calibration.json"
    assert load_calibration(tmp_path / "nothing") is None
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(InvalidInput):
        load_calibration(path)


def test_at_most_max_mixture_emotions_take_part():
    everything = dict.fromkeys(BASIS, 0.9)
    cond = conditioning(everything, BASE)
    assert len(cond.terms) == expression_table().max_mixture


def test_emotions_sharing_a_phrase_add_up():
    table = expression_table({"emotions": {"trust": {"phrase": "smiling happily", "scale": 0.5}}})
    together = conditioning({"joy": 0.3, "trust": 0.4}, BASE, table)
    assert [t.emotions for t in together.terms] == [("joy", "trust")]
    assert together.terms[0].intensity == pytest.approx(0.3 + 0.4 * 0.5)


def test_sd_family_table_speaks_plain_english():
    table = expression_table(family="sd")
    cond = conditioning({"anger": 0.9}, "photo of a woman, calm neutral expression", table)
    assert cond.target_prompt == "photo of a woman, intense angry expression, furrowed brows"
    with pytest.raises(ValueError):
        expression_table(family="nope")


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(BASIS), st.floats(0, 1), max_size=4))
def test_quantisation_is_idempotent(values):
    cond = conditioning(values, BASE)
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
        ({"words": [{"word": "x", "upto": 0.5}]}, "words"),
        ({"attention": {"default": 0, "calibrate": [1.0]}}, "default"),
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
    assert data["target_prompt"] == cond.target_prompt
    assert data["vad"]["valence"] < 0
