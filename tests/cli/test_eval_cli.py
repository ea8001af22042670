"""`charforge eval`: a table for people, JSON for scripts, and a default model for both mini models.

The evaluations are replaced by recorders: what is tested is the command line, not the figures.
"""

from __future__ import annotations

import json

import pytest

REPORT = {"samples": 8, "steps": 5, "guidance": 5.0, "hair_colour_accuracy": 0.875, "vae": {"psnr": 27.31234}}


@pytest.fixture
def portrait(monkeypatch):
    import charforge.recipes.portrait_mini.evaluate as module

    seen = []
    monkeypatch.setattr(module, "evaluate", lambda model, **kw: seen.append((model, kw)) or REPORT)
    return seen


def test_eval_portrait_mini_prints_a_table(cli, portrait):
    code, out, err = cli("eval", "portrait-mini", "--samples", "8", "--steps", "5")
    assert code == 0, err
    assert portrait == [(None, {"samples": 8, "steps": 5, "guidance": 5.0})]
    assert "{" not in out  # not a Python dict
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in out.splitlines() if line.count("│") == 3}
    assert rows["hair_colour_accuracy"] == "0.875" and rows["vae.psnr"] == "27.31"


def test_eval_portrait_mini_json(cli, portrait):
    code, out, _ = cli("eval", "portrait-mini", "--json")
    assert code == 0 and json.loads(out) == REPORT


def test_eval_bgm_mini_defaults_to_the_shipped_model(cli, monkeypatch):
    import charforge.recipes.bgm_mini.evaluate as module
    from charforge.engine.loading import default_bgm_model_path

    if not (default_bgm_model_path() / "model_index.json").is_file():
        pytest.skip("the BGM mini model is not installed")
    seen = []
    monkeypatch.setattr(module, "evaluate_bgm", lambda model, **kw: seen.append((model, kw)) or {"clips": 4})
    code, out, err = cli("eval", "bgm-mini", "--seeds", "1", "--leads", "pad", "--json")
    assert code == 0, err
    assert seen == [(default_bgm_model_path(), {"seeds": 1, "leads": ("pad",), "seconds": 10.0, "steps": 20,
                                                "guidance": 5.0, "sketch": True})]
    assert json.loads(out) == {"clips": 4}
    code, _, err = cli("eval", "bgm-mini", "--seeds", "1", "--no-sketch", "--json")
    assert code == 0, err
    assert seen[-1][1]["sketch"] is False  # the unsteered path, for a side-by-side
    code, _, err = cli("eval", "bgm-mini", "--leads", "kazoo")
    assert code == 2 and "--leads" in err


def test_eval_bgm_mini_refuses_a_folder_that_is_not_a_model(cli, tmp_path):
    code, _, err = cli("eval", "bgm-mini", "--model", tmp_path)
    assert code == 2 and "not a diffusers model folder" in err
