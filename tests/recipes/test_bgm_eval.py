"""The BGM evaluation's bookkeeping: the grid fixed up front, per-cell tables, tempo order, distinct moods."""

from __future__ import annotations

import numpy as np
import pytest

from charforge.errors import InvalidInput
from charforge.recipes.bgm_mini import evaluate, listeners


def _row(v: float, a: float, seed: int, *, right: bool, bpm: float) -> dict:
    mode = ("major" if v > 0 else "minor") if right else ("minor" if v > 0 else "major")
    names = ["kk-chroma_cqt", "temperley-chroma_cqt"]
    return {"valence": v, "arousal": a, "lead": "piano", "seed": seed, "modes": dict.fromkeys(names, mode),
            "bpm": dict.fromkeys(listeners.TEMPO_TRACKERS, bpm), "lufs": -16.2, "true_peak_dbtp": -1.1,
            "share_above_4khz": 0.01}


def test_grid_is_issue_17s_with_held_out_seeds():
    clips = evaluate.grid_clips(seeds=4)
    assert len(clips) == 4 * 3 * 4 * 2
    assert {c["valence"] for c in clips} == {-0.8, -0.3, 0.3, 0.8} and {c["arousal"] for c in clips} == {0.1, 0.5, 0.9}
    assert min(c["seed"] for c in clips) >= 9001 and len({c["lead"] for c in clips}) >= 2
    with pytest.raises(InvalidInput):
        evaluate.grid_clips(seeds=0)


def test_a_bad_cell_shows_in_the_table_even_when_the_average_is_good():
    rows = [_row(v, a, s, right=not (v == -0.3 and a == 0.9), bpm=100 + 100 * a + s)
            for v in evaluate.VALENCES for a in evaluate.AROUSALS for s in range(4)]
    report = evaluate.summarize(rows, -16.0)
    kk = report["mode"]["kk-chroma_cqt"]
    assert kk["accuracy"] == pytest.approx(11 / 12) and kk["worst_cell"] == 0.0 and kk["minor"] < kk["major"] == 1.0
    assert report["tables"]["mode_accuracy"]["kk-chroma_cqt"]["-0.3"]["0.9"] == 0.0
    tempo = report["tempo"]["beat_track"]
    assert tempo["min_gap"] == pytest.approx(40.0) and tempo["spearman"] > 0.9
    assert report["loudness"]["max_deviation_lu"] == pytest.approx(0.2)


def test_gain_scaled_copies_are_caught():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(1000), rng.standard_normal(1000)
    same = evaluate._distinct_moods({(0.3, 0.5, "piano", 1): x, (0.3, 0.9, "piano", 1): 1.8 * x})
    assert same["max_abs_correlation"] > 0.999 and same["min_gain_residual"] < 1e-9
    different = evaluate._distinct_moods({(0.3, 0.5, "piano", 1): x, (0.3, 0.9, "piano", 1): y})
    assert different["max_abs_correlation"] < 0.2 and different["min_gain_residual"] > 0.9


def test_listeners_share_no_code_with_what_they_judge():
    """The judges import no charforge module: not the sketch composer that steers the default path
    (charforge.audio.seeding/steer), not the runtime's own analysis, not the training-data generator."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(listeners))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported and not any(name.startswith("charforge") for name in imported), imported
    evaluate_tree = ast.parse(inspect.getsource(evaluate))
    modules = {node.module or "" for node in ast.walk(evaluate_tree) if isinstance(node, ast.ImportFrom)}
    assert not modules & {"charforge.audio.seeding", "charforge.audio.steer", "charforge.audio.analysis",
                          "charforge.recipes.bgm_mini.music"}, modules
