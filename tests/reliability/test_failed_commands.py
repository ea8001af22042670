"""Class 1 of issue #12: a command that fails leaves user data as it was; `demo` never modifies a
character it did not create; `charforge set NAME --model REF` changes a character's model.

On the old code `charforge demo --model /nonexistent/model` exited 2 after importing the sample cast
and rewriting the model of the user's own characters named like a sample card, and no command could
set a model back.
"""

from __future__ import annotations

import json
import shutil

import pytest
from helpers.reliability import dump


def one_line_error(result) -> str:
    code, out, err = result
    assert code == 2, (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def users_mira(cli, tmp_path):
    """A workspace holding the user's own `mira` (a sample name) with another prompt."""
    ws = tmp_path / "ws"
    assert cli("create", "mira", "--prompt", "portrait of my own mira", "--no-render", "-w", ws)[0] == 0
    return ws


@pytest.fixture
def broken_model(tmp_path, tiny_model_dir):
    """A diffusers folder that looks right (model_index.json) but whose UNet weights are garbage."""
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.write_bytes(b"not safetensors at all")
    return broken


def test_demo_with_a_missing_model_changes_nothing(cli, users_mira):
    before = dump(users_mira)
    one_line_error(cli("demo", "--model", "/nonexistent/model", "--no-music", "-w", users_mira))
    assert dump(users_mira) == before


def test_demo_with_an_unloadable_model_changes_nothing(cli, users_mira, broken_model):
    before = dump(users_mira)
    one_line_error(cli("demo", "--model", broken_model, "--no-music", "-w", users_mira))
    assert dump(users_mira) == before


@pytest.mark.slow
def test_demo_skips_the_users_character_of_a_sample_name_and_says_so(cli, users_mira, tiny_model_dir):
    code, out, err = cli("demo", "--model", tiny_model_dir, "--steps", 2, "--no-music", "--json", "-w", users_mira)
    assert code == 0, err
    data = json.loads(out)
    assert data["skipped"] == ["mira"] and "mira" not in data["characters"]
    code, out, _ = cli("show", "mira", "--json", "-w", users_mira)
    mine = json.loads(out)
    assert (mine["prompt"], mine["model"], mine["version"], mine["identity"]) == ("portrait of my own mira", None, 1, [])
    assert mine["assets"] == []


def test_create_whose_identity_build_fails_leaves_nothing(cli, tmp_path, broken_model):
    ws = tmp_path / "ws"
    assert cli("init", "-w", ws)[0] == 0
    before = dump(ws)
    one_line_error(cli("create", "mira", "--prompt", "portrait of a girl", "--model", broken_model, "-w", ws))
    assert dump(ws) == before


def test_create_and_import_refuse_an_unreadable_model_before_writing(cli, tmp_path):
    ws = tmp_path / "ws"
    assert cli("init", "-w", ws)[0] == 0
    before = dump(ws)
    one_line_error(cli("create", "mira", "--prompt", "p", "--model", "/nonexistent/model", "--no-render", "-w", ws))
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "a.toml").write_text('name = "a"\nprompt = "portrait of a girl"\n')
    (cards / "b.toml").write_text('name = "b"\nprompt = "portrait of a boy"\nmodel = "/nonexistent/model"\n')
    one_line_error(cli("import", cards, "-w", ws))  # the good card is not imported either
    assert dump(ws) == before


def test_set_model_changes_the_model_and_the_identity_goes_stale(cli, drawn, tiny_model_dir):
    code, out, _ = cli("emote", "mira", "joy=0.8", "--json", "-w", drawn)
    assert code == 0 and json.loads(out)["cached"]
    code, out, err = cli("set", "mira", "--model", "default", "-w", drawn)
    assert code == 0, err
    assert "now uses the default model" in out and "reinvert" in out  # the usual stale message
    code, out, _ = cli("show", "mira", "--json", "-w", drawn)
    assert json.loads(out)["model"] is None
    err = one_line_error(cli("emote", "mira", "joy=0.3", "-w", drawn))  # a new state needs the identity
    assert "reinvert" in err
    code, out, err = cli("set", "mira", "--model", tiny_model_dir, "-w", drawn)  # and back again
    assert code == 0 and "reinvert" not in out, err
    code, out, _ = cli("emote", "mira", "joy=0.8", "--json", "-w", drawn)
    assert code == 0 and json.loads(out)["cached"]


def test_set_model_refuses_before_writing(cli, drawn, broken_model):
    before = dump(drawn)
    one_line_error(cli("set", "mira", "--model", "/nonexistent/model", "-w", drawn))
    one_line_error(cli("set", "mira", "-w", drawn))
    one_line_error(cli("set", "nobody", "--model", "default", "-w", drawn))
    assert dump(drawn) == before
