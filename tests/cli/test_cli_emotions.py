"""`charforge calibrate` and `charforge eval emotions`: bad input, and a character's own calibration end to end."""

from __future__ import annotations

import json

import pytest

from charforge.character.identity import build_identity
from charforge.emotion.calibration import load_calibration, workspace_relpath


def test_bad_options_are_one_line_and_exit_2(cli, tmp_path):
    code, out, err = cli("eval", "emotions", "--mode", "sideways")
    assert code == 2 and "--mode" in err and len(err.strip().splitlines()) == 1
    code, out, err = cli("eval", "emotions", "--model", tmp_path)
    assert code == 2 and "model_index.json" in err
    code, out, err = cli("calibrate", "portrait-mini", "--characters", "0")
    assert code == 2 and "--characters" in err
    assert cli("init", "-w", tmp_path / "ws")[0] == 0
    code, out, err = cli("calibrate", "nobody", "-w", tmp_path / "ws")
    assert code == 2 and "nobody" in err
    code, out, err = cli("eval", "emotions", "--from-pictures", tmp_path / "missing")
    assert code == 2 and "--from-pictures" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    code, out, err = cli("eval", "emotions", "--from-pictures", tmp_path / "empty")
    assert code == 2 and "no kept sweep pictures" in err


@pytest.mark.slow
def test_kept_sweep_pictures_are_judged_again_as_drawn(tmp_path):
    import numpy as np

    from charforge.recipes.portrait_mini.emotion_eval import LEVELS, PAIRS, judge_sweep, load_parts, save_parts
    from charforge.recipes.portrait_mini.judge import EmotionJudge

    rng = np.random.default_rng(0)
    count = 1 + 8 * len(LEVELS) + len(PAIRS)
    parts = [{"name": f"held{k}", "pictures": rng.integers(0, 256, (count, 64, 64, 3), dtype=np.uint8),
              "face": rng.random((64, 64)) > 0.5, "mixes": [(a, b, 0.3) for a, b in PAIRS], "outside": [36.5, 40.0]}
             for k in range(2)]  # fmt: skip
    save_parts(parts, str(tmp_path / "kept"))
    again = load_parts(str(tmp_path / "kept"))
    for old, new in zip(parts, again):
        assert new["name"] == old["name"] and new["mixes"] == old["mixes"] and new["outside"] == old["outside"]
        assert np.array_equal(new["pictures"], old["pictures"]) and np.array_equal(new["face"], old["face"])
    judge = EmotionJudge()  # any judge: the same pictures must give the same report
    first = judge_sweep(parts, "edit", 20, True, judge=judge)
    assert judge_sweep(again, "edit", 20, True, judge=judge) == first
    assert first["characters"] == 2 and first["mixtures"]["count"] == 2 * len(PAIRS)
    assert first["psnr_outside_face_raw_db"]["min"] == 36.5


@pytest.mark.slow  # renders the calibration grid: every emotion at every edit strength
def test_calibrating_a_character_stores_its_models_curve_in_the_workspace(forge, tiny_model_dir, cli):
    mira = forge.create("mira", prompt="portrait of a girl with red hair, looking calm", seed=3,
                        model=str(tiny_model_dir), build_identity=False)
    build_identity(mira, {"steps": 3})
    ws = forge.workspace.root
    code, out, err = cli("calibrate", "mira", "--steps", "3", "--json", "-w", ws)
    assert code == 0, err
    data = json.loads(out)
    mira.refresh()
    path = forge.workspace.resolve(workspace_relpath(mira.model_hash))
    assert data["path"] == str(path) and data["method"] == "face-change"
    calibration = load_calibration(path)
    for emotion in calibration.emotions:
        levels = [level for level, _ in calibration.chain(emotion)]
        assert levels == sorted(levels) and (not levels or levels[-1] == 1.0)
    code, out, err = cli("explain", "mira", "anger=0.5", "--json", "-w", ws)
    assert code == 0 and json.loads(out)["calibrated"] is True
