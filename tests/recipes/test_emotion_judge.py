"""The judge of intensity and mixture, read on renders of identities it never saw, and the sweep's statistics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from charforge.emotion.conditioning import expression_table
from charforge.emotion.table import BASIS
from charforge.recipes.portrait_mini import population, render
from charforge.recipes.portrait_mini.emotion_eval import PAIRS, distinct_levels, held_out_cast, setting_conditioning
from charforge.recipes.portrait_mini.judge import CHECK_SEED, load_judge, render_faces


@pytest.fixture(scope="module")
def judge():
    return load_judge()


@pytest.mark.slow
def test_judge_reads_intensity_in_order_on_held_out_identities(judge):
    people = [p.with_expression("neutral", 0.0) for p in population.sample_portraits(CHECK_SEED, 6, held_out=True)]
    levels = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    for j, emotion in enumerate(BASIS):
        faces = render_faces([p.with_state({emotion: v}) for p in people for v in levels])
        read = judge.intensities(faces).numpy()[:, j].reshape(len(people), len(levels)).mean(0)
        assert spearmanr(levels, read).statistic >= 0.95, (emotion, read)
        assert read[1] - read[0] > 0.08 and read[-1] - read[3] > 0.08, (emotion, read)


def test_judge_names_both_emotions_of_a_mixture(judge):
    people = list(population.sample_portraits(CHECK_SEED + 5, len(PAIRS), held_out=True))
    mixed = [p.with_state({a: w, b: 1 - w}) for p, (a, b), w in zip(people, PAIRS, [0.3, 0.5, 0.7] * 10)]
    read = judge.intensities(render_faces(mixed)).numpy()
    hits = [set(np.argsort(-r)[:2]) == {BASIS.index(a), BASIS.index(b)} for r, (a, b) in zip(read, PAIRS)]
    assert np.mean(hits) >= 0.85


def test_judge_tells_trust_and_anticipation_from_joy_and_surprise(judge):
    people = list(population.sample_portraits(CHECK_SEED + 7, 12, held_out=True))
    for emotion in ("trust", "anticipation", "joy", "surprise"):
        read = judge.intensities(render_faces([p.with_state({emotion: 0.7}) for p in people])).numpy()
        assert (read.argmax(1) == BASIS.index(emotion)).mean() >= 0.9, emotion


def test_calm_faces_read_low(judge):
    people = [p.with_expression("neutral", 0.0) for p in population.sample_portraits(CHECK_SEED + 9, 20, held_out=True)]
    assert judge.intensities(render_faces(people)).numpy().max() < 0.15


def test_distinct_levels_counts_steps_above_the_noise():
    assert distinct_levels([0.0, 0.1, 0.2, 0.3, 0.4], 0.05) == 5
    assert distinct_levels([0.0, 0.01, 0.02, 0.5, 0.51], 0.05) == 2
    assert distinct_levels([0.5, 0.4, 0.3], 0.05) == 1  # falling readings never count


def test_eval_cast_is_held_out_and_calm():
    cast = held_out_cast(6)
    assert len({m.prompt for m in cast}) == 6
    for m in cast:
        p = render.portrait_from_caption(m.prompt)
        assert population.is_held_out(p) and p.state() == {} and m.prompt.endswith("looking calm")


def test_calibration_is_measured_on_other_characters_than_the_evaluation():
    from charforge.recipes.portrait_mini.emotion_eval import calibration_cast

    calibrating = calibration_cast(6)
    assert not {m.prompt for m in calibrating} & {m.prompt for m in held_out_cast(12)}
    assert all(population.is_held_out(render.portrait_from_caption(m.prompt)) for m in calibrating)


def test_the_calibration_judge_is_another_judge():
    from charforge.recipes.portrait_mini.judge import CALIBRATION_WEIGHTS, WEIGHTS, load_judge

    evaluating, calibrating = load_judge(WEIGHTS).state_dict(), load_judge(CALIBRATION_WEIGHTS).state_dict()
    assert any(not (evaluating[k] == calibrating[k]).all() for k in evaluating)


def test_a_measured_setting_is_one_prompt_with_its_word_and_weight():
    table = expression_table()
    cond = setting_conditioning("anger", "slightly", 1.4, held_out_cast(1)[0].prompt, table)
    assert cond.target_prompt.endswith(", slightly frowning angrily")
    assert cond.token_weights() == {"slightly frowning angrily": 1.4}


def test_a_measured_setting_is_drawn_away_from_its_unlike_emotions_as_feel_draws_it():
    table = expression_table({"emotions": {"fear": {"unlike": {"sadness": 0.3}}}})
    cond = setting_conditioning("fear", "extremely", 1.0, held_out_cast(1)[0].prompt, table, strength=0.4)
    toward, away = cond.branches()
    assert toward.strength == 0.4 and away.strength == -0.3 * 0.4
    assert away.prompt.endswith(", extremely crying sadly")


def test_summary_figures_follow_the_readings():
    from charforge.recipes.portrait_mini.emotion_eval import LEVELS, summarise

    n = len(LEVELS)
    readings = {}
    for c in range(2):
        rows = [np.zeros(len(BASIS))]
        for j in range(len(BASIS)):
            for v in LEVELS:
                r = np.zeros(len(BASIS))
                r[j] = v if j != 0 else 0.5  # joy reads flat: no grading
                rows.append(r)
        readings[f"c{c}"] = np.stack(rows)
    mixes = [("anger", "disgust", 0.5, np.eye(len(BASIS))[BASIS.index("anger")] + 0.5 * np.eye(len(BASIS))[BASIS.index("disgust")]),
             ("anger", "disgust", 0.5, np.eye(len(BASIS))[BASIS.index("joy")])]
    face_change = {e: [(v, 10 * v, abs(v - 0.6)) for v in LEVELS] for e in BASIS}
    report = summarise(readings, mixes, face_change, np.full(len(BASIS), 0.05), "plain", 10, False)
    fear = report["emotions"]["fear"]
    assert fear["spearman_means"] == pytest.approx(1.0) and fear["distinct_levels"] == n
    assert fear["recognised_at_0.6_plus"] == 1.0 and fear["judge_0.2_minus_calm"] == pytest.approx(0.2)
    assert report["emotions"]["joy"]["distinct_levels"] == 1
    assert report["mixtures"]["both_in_top_two"] == 0.5 and report["mixtures"]["unrequested_on_top"] == 0.5
