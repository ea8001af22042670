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
