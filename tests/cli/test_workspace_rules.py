"""Issue #19's CLI rules: no workspace is created by a read, errors name where they looked, destructive
commands ask (or need --yes off a terminal), and `show` says what each asset depicts."""

from __future__ import annotations

import io
import sys

import pytest

PROMPT = "portrait of a girl with long red hair, green eyes, blue outfit"


@pytest.fixture
def ws(tmp_path, cli):
    assert cli("create", "mira", "--prompt", PROMPT, "--seed", "7", "--no-render", "-w", tmp_path / "ws")[0] == 0
    return tmp_path / "ws"


READS = [
    ["list"], ["show", "mira"], ["emote", "mira", "joy=0.5", "--no-render"], ["explain", "mira", "joy=0.5"],
    ["rename", "mira", "mirabel"], ["delete", "mira", "--yes"], ["bgm", "mira"], ["reinvert", "mira"],
    ["inpaint", "mira", "--prompt", "red outfit", "--region", "outfit"], ["mask", "mira", "face", "--out", "m.png"],
    ["db", "current"], ["db", "upgrade"], ["db", "downgrade", "base", "--yes"],
]  # fmt: skip


@pytest.mark.parametrize("args", READS, ids=[" ".join(a[:2]) for a in READS])
def test_a_mistyped_workspace_is_reported_not_created(tmp_path, cli, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    typo = tmp_path / "wrokspace"
    code, out, err = cli(*args, "--workspace", typo)
    assert code == 2 and out == ""
    assert err.strip() == f"error: no workspace at {typo} (create it with `charforge init`, or pass --workspace DIR)"
    assert not typo.exists()


@pytest.mark.parametrize("args", [["init"], ["create", "nell", "--prompt", PROMPT, "--no-render"]])
def test_creating_commands_may_create_it(tmp_path, cli, args):
    assert cli(*args, "-w", tmp_path / "new")[0] == 0
    assert (tmp_path / "new" / "charforge.db").is_file()


def test_an_unknown_character_error_names_the_workspace(ws, cli):
    for args in (["show", "nobody"], ["emote", "nobody", "joy=0.5"], ["bgm", "nobody"], ["delete", "nobody", "--yes"]):
        code, _, err = cli(*args, "-w", ws)
        assert code == 2 and err.strip() == f"error: no character named 'nobody' in the workspace at {ws}", args


def names(cli, ws) -> list[str]:
    import json

    return [c["name"] for c in json.loads(cli("list", "--json", "-w", ws)[1])]


def test_delete_off_a_terminal_needs_yes(ws, cli, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # not a terminal: the answer is never read
    code, _, err = cli("delete", "mira", "-w", ws)
    assert code == 2 and "--yes" in err and len(err.strip().splitlines()) == 1
    assert names(cli, ws) == ["mira"]
    assert cli("delete", "mira", "-y", "-w", ws)[0] == 0
    assert names(cli, ws) == []


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "kept"), [("n\n", True), ("\n", True), ("y\n", False)])
def test_delete_on_a_terminal_asks(ws, cli, monkeypatch, answer, kept):
    monkeypatch.setattr(sys, "stdin", Terminal(answer))
    code, out, err = cli("delete", "mira", "-w", ws)
    assert "cannot be undone" in out
    assert (code == 2 and "aborted" in err) if kept else code == 0
    assert names(cli, ws) == (["mira"] if kept else [])


def test_downgrade_to_base_needs_yes_off_a_terminal(ws, cli, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, err = cli("db", "downgrade", "base", "-w", ws)
    assert code == 2 and "--yes" in err
    assert names(cli, ws) == ["mira"]  # the tables are still there
    assert cli("db", "downgrade", "0001", "-w", ws)[0] == 0  # a step that keeps the data is not asked about
    assert cli("db", "downgrade", "base", "--yes", "-w", ws)[0] == 0
    assert "base (empty)" in cli("db", "current", "-w", ws)[1]


def test_show_lists_assets_by_the_state_they_show(ws, cli):
    from charforge.audio.mood import plan_for_state
    from charforge.emotion import EmotionState
    from charforge.forge import Forge

    plan = plan_for_state(EmotionState.from_mapping({"sadness": 0.6}))
    with Forge.open(ws) as forge:
        mira = forge.get("mira")
        mira.store.add_asset(b"png bytes", "cg", "a" * 64, {"state": {"joy": 0.8, "fear": 0.2}}, suffix=".png")
        mira.store.add_asset(b"wav bytes", "bgm", "b" * 64, {"plan": plan.to_dict()}, suffix=".wav")
    code, out, _ = cli("show", "mira", "-w", ws)
    assert code == 0
    cg_row = next(line for line in out.splitlines() if line.startswith("  cg "))
    bgm_row = next(line for line in out.splitlines() if line.startswith("  bgm "))
    assert "joy=0.8 fear=0.2" in cg_row and "aaaaaaaaaaaa" not in cg_row
    assert f"valence {plan.valence:+.2f}" in bgm_row and plan.mode in bgm_row and f"{plan.bpm:.0f} bpm" in bgm_row
