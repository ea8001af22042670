"""The public CLI contract of the store commands: outputs, --json, exit codes, and no damage on bad input."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "portrait of a girl with long red hair, green eyes, fair skin, blue outfit, pink background"


@pytest.fixture
def ws(tmp_path, cli):
    code, _, err = cli("init", "--workspace", str(tmp_path))
    assert code == 0, err
    code, _, err = cli("create", "mira", "--prompt", PROMPT, "--seed", "7", "--no-render", "-w", str(tmp_path))
    assert code == 0, err
    return tmp_path


def dump(workspace: Path) -> list[str]:
    con = sqlite3.connect(workspace / "charforge.db")
    try:
        return list(con.iterdump())
    finally:
        con.close()


def test_init_json(tmp_path, cli):
    code, out, err = cli("init", "--workspace", str(tmp_path / "w"), "--json")
    assert code == 0 and err == ""
    info = json.loads(out)
    assert info["workspace"] == str(tmp_path / "w") and info["revision"] is not None
    assert (tmp_path / "w" / "charforge.db").is_file()


def test_workspace_option_before_or_after_the_command_and_from_env(tmp_path, cli, monkeypatch):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert cli("--workspace", str(a), "create", "mira", "--prompt", PROMPT, "--no-render")[0] == 0
    assert cli("create", "nell", "--prompt", PROMPT, "--no-render", "--workspace", str(b))[0] == 0
    monkeypatch.setenv("CHARFORGE_HOME", str(c))
    assert cli("create", "ivy", "--prompt", PROMPT, "--no-render")[0] == 0
    # the option after the command wins over the one before it
    assert cli("--workspace", str(a), "create", "suki", "--prompt", PROMPT, "--no-render", "--workspace", str(b))[0] == 0
    names = {p.name: [r["name"] for r in json.loads(cli("list", "--json", "-w", str(p))[1])] for p in (a, b, c)}
    assert names == {"a": ["mira"], "b": ["nell", "suki"], "c": ["ivy"]}


def test_create_list_show_json(ws, cli):
    code, out, err = cli("create", "nell", "--prompt", PROMPT, "--negative", "blurry", "--model", "my/model", "--no-render",
                         "--json", "-w", str(ws))
    assert code == 0 and err == ""
    created = json.loads(out)
    assert (created["name"], created["negative_prompt"], created["model"]) == ("nell", "blurry", "my/model")

    code, out, _ = cli("list", "--json", "-w", str(ws))
    listed = json.loads(out)
    assert [r["name"] for r in listed] == ["mira", "nell"]
    assert listed[0]["seed"] == 7 and listed[0]["prompt"] == PROMPT

    code, out, _ = cli("show", "mira", "--json", "-w", str(ws))
    shown = json.loads(out)
    assert shown["name"] == "mira" and shown["identity"] == [] and shown["assets"] == []
    assert shown["history"] == {"count": 0, "recent": []}


def test_human_output_mentions_the_characters(ws, cli):
    code, out, _ = cli("list", "-w", str(ws))
    assert code == 0 and "mira" in out
    code, out, _ = cli("show", "mira", "-w", str(ws))
    assert code == 0 and PROMPT in out


def test_emote_records_the_state(ws, cli):
    code, out, err = cli("emote", "mira", "happy=0.8", "fear=0.2", "--no-render", "--json", "-w", str(ws))
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["state"] == {"joy": 0.8, "fear": 0.2} and data["dominant"] == "joy"
    assert data["source"] == "cli" and data["version"] == 2
    assert data["vad"]["valence"] > 0
    code, out, _ = cli("emote", "mira", "sadness=0.6", "--no-render", "-w", str(ws))
    assert code == 0 and "sadness=0.6" in out
    shown = json.loads(cli("show", "mira", "--json", "-w", str(ws))[1])
    assert shown["current_state"] == {"sadness": 0.6}
    assert [e["state"] for e in shown["history"]["recent"]] == [{"joy": 0.8, "fear": 0.2}, {"sadness": 0.6}]


def test_rename_and_delete(ws, cli):
    assert cli("rename", "mira", "mirabel", "-w", str(ws))[0] == 0
    assert cli("delete", "mirabel", "--yes", "-w", str(ws))[0] == 0
    assert json.loads(cli("list", "--json", "-w", str(ws))[1]) == []


BAD_INPUTS = [
    ("unknown character", ["show", "nobody"], "no character named 'nobody'"),
    ("unknown character (emote)", ["emote", "nobody", "joy=0.5"], "no character named 'nobody'"),
    ("unknown character (delete)", ["delete", "nobody"], "no character named 'nobody'"),
    ("invalid name", ["create", "Bad Name", "--prompt", PROMPT], "invalid character name"),
    ("path traversal", ["create", "../evil", "--prompt", PROMPT], "invalid character name"),
    ("path traversal (show)", ["show", "../../etc"], "invalid character name"),
    ("duplicate name", ["create", "mira", "--prompt", "another"], "already exists"),
    ("missing prompt", ["create", "nell"], "--prompt"),
    ("empty prompt", ["create", "nell", "--prompt", " "], "prompt"),
    ("unknown emotion", ["emote", "mira", "glee=0.5"], "unknown emotion 'glee'"),
    ("intensity above 1", ["emote", "mira", "joy=1.5"], "within [0, 1]"),
    ("intensity below 0", ["emote", "mira", "joy=-0.5"], "within [0, 1]"),
    ("NaN", ["emote", "mira", "joy=nan"], "NaN"),
    ("malformed, no value", ["emote", "mira", "joy"], "malformed emotion 'joy'"),
    ("malformed, not a number", ["emote", "mira", "joy=X"], "malformed emotion 'joy=X'"),
    ("malformed, empty name", ["emote", "mira", "=0.3"], "malformed emotion"),
    ("one bad among good", ["emote", "mira", "joy=0.5", "fear=2"], "fear"),
    ("no emotions", ["emote", "mira"], "EMOTION=INTENSITY"),
    ("rename to invalid name", ["rename", "mira", "Mira!"], "invalid character name"),
    ("bad downgrade target", ["db", "downgrade", "nonsense"], "migration failed"),
    ("import missing folder", ["import", "no/such/dir"], "not a folder"),
]


@pytest.mark.parametrize(("label", "args", "fragment"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(ws, cli, label, args, fragment):
    cli("emote", "mira", "joy=0.3", "--no-render", "-w", str(ws))
    before = dump(ws)
    files_before = sorted(ws.rglob("*"))
    code, out, err = cli(*args, "-w", str(ws))
    assert code == 2, (label, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    if fragment is not None:
        assert fragment in lines[0]
    assert dump(ws) == before
    assert sorted(ws.rglob("*")) == files_before


def test_json_errors_leave_stdout_empty(ws, cli):
    code, out, err = cli("emote", "mira", "joy=7", "--json", "-w", str(ws))
    assert code == 2 and out == "" and err.startswith("error:")


def test_import_sample_cast(tmp_path, cli):
    code, out, err = cli("import", str(ROOT / "characters"), "--json", "-w", str(tmp_path))
    assert code == 0, err
    first = json.loads(out)
    assert len(first) >= 3 and {r["status"] for r in first} == {"created"}
    again = json.loads(cli("import", str(ROOT / "characters"), "--json", "-w", str(tmp_path))[1])
    assert {r["status"] for r in again} == {"exists"}  # importing twice is harmless
    listed = json.loads(cli("list", "--json", "-w", str(tmp_path))[1])
    assert sorted(r["name"] for r in listed) == sorted(r["name"] for r in first)


def test_import_is_all_or_nothing(tmp_path, cli):
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "a.toml").write_text(f'name = "ann"\nprompt = "{PROMPT}"\n')
    (cards / "b.toml").write_text('name = "bob"\nprompt = "x"\nseed = "seven"\n')
    ws = tmp_path / "ws"
    code, _, err = cli("import", str(cards), "-w", str(ws))
    assert code == 2 and "b.toml" in err and "seed" in err
    assert not ws.exists()


def test_db_commands(tmp_path, cli):
    ws = str(tmp_path)
    assert cli("db", "current", "-w", ws)[0] == 2  # nothing to inspect yet, and nothing created
    assert cli("db", "upgrade", "-w", ws)[0] == 2  # only init/create/import/demo make a workspace
    assert not (tmp_path / "charforge.db").exists()
    assert cli("init", "-w", ws)[0] == 0
    code, out, _ = cli("db", "upgrade", "--json", "-w", ws)
    info = json.loads(out)
    assert code == 0 and info["current"] == info["head"]
    info = json.loads(cli("db", "downgrade", "base", "--yes", "--json", "-w", ws)[1])
    assert info["current"] is None
    info = json.loads(cli("db", "upgrade", "0001", "--json", "-w", ws)[1])
    assert info["current"] == "0001"
    code, out, _ = cli("db", "current", "-w", ws)
    assert code == 0 and "0001" in out


@pytest.mark.slow  # three fresh `charforge` processes
def test_console_script_end_to_end(tmp_path):
    """The installed `charforge` command: a real process, exit codes and one-line errors."""
    exe = Path(sys.executable).with_name("charforge")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from charforge.cli.main import main; main()"]
    assert subprocess.run([*cmd, "--workspace", str(tmp_path), "init"], capture_output=True).returncode == 0
    ok = subprocess.run([*cmd, "--workspace", str(tmp_path), "list", "--json"], capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout) == []
    bad = subprocess.run([*cmd, "--workspace", str(tmp_path), "emote", "mira", "joy=nan"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and bad.stdout == ""
