"""Class 3 of issue #12: corrupted or tampered files are never served as good, file operations stay
inside `assets/`, and the database is never lost or silently replaced.

On the old code: a byte-flipped CG came back from `emote --json` as "cached": true; an asset row
edited to `charforge.db` made `delete` unlink the database (and the next command silently started
an empty workspace); a deleted database beside asset files was replaced by an empty one.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3

from helpers.reliability import dump, health


def cg_row(ws, state_json_fragment: str | None = None) -> tuple[int, str, str]:
    with sqlite3.connect(ws / "charforge.db") as conn:
        rows = conn.execute("SELECT id, path, sha256, params FROM assets WHERE kind = 'cg' ORDER BY id").fetchall()
    for row_id, path, sha, params in rows:
        mode = json.loads(params)["mode"]
        if (state_json_fragment is None and mode == "base") or (state_json_fragment and state_json_fragment in params):
            return row_id, path, sha
    raise AssertionError("no such CG")


def flip_a_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_byte_flipped_cg_is_redrawn_not_served(cli, drawn):
    _, path, sha = cg_row(drawn)
    flip_a_byte(drawn / path)
    code, out, err = cli("emote", "mira", "neutral=1", "--json", "-w", drawn)
    assert code == 0, err
    data = json.loads(out)
    assert data["cached"] is False  # the old code said true and pointed at the damaged file
    assert hashlib.sha256((drawn / path).read_bytes()).hexdigest() == sha  # redrawn: same bytes as stored
    assert health(drawn) == []
    assert "modified" in err and err.count("\n") == 1  # one warning line says why it was redrawn


def test_a_byte_flipped_edit_is_redrawn_with_the_model(cli, drawn):
    _, path, sha = cg_row(drawn, '"joy"')
    flip_a_byte(drawn / path)
    code, out, err = cli("emote", "mira", "joy=0.8", "--json", "-w", drawn)
    assert code == 0, err
    assert json.loads(out)["cached"] is False
    assert hashlib.sha256((drawn / path).read_bytes()).hexdigest() == sha
    assert health(drawn) == []


def test_an_asset_row_pointing_at_the_database_never_touches_it(cli, drawn):
    from charforge.forge import Forge

    with Forge.open(drawn) as forge:
        forge.create("nell", prompt="portrait of a boy")
    row_id, _, _ = cg_row(drawn)
    with sqlite3.connect(drawn / "charforge.db") as conn:
        conn.execute("UPDATE assets SET path = 'charforge.db' WHERE id = ?", (row_id,))
    code, out, err = cli("emote", "mira", "neutral=1", "--json", "-w", drawn)  # redrawn, the db not served
    assert code == 0, err
    assert json.loads(out)["path"] != str(drawn / "charforge.db")
    with sqlite3.connect(drawn / "charforge.db") as conn:
        conn.execute("UPDATE assets SET path = 'charforge.db' WHERE id = ?", (row_id,))
    code, _, err = cli("delete", "mira", "--yes", "-w", drawn)
    assert code == 0, err
    assert (drawn / "charforge.db").stat().st_size > 0
    code, out, err = cli("list", "--json", "-w", drawn)
    assert code == 0 and [c["name"] for c in json.loads(out)] == ["nell"]


def test_an_asset_row_pointing_outside_never_touches_the_outside_file(cli, drawn):
    outside = drawn.parent / "outside"
    outside.mkdir()
    (outside / "x").write_text("someone else's file")
    row_id, _, _ = cg_row(drawn)
    with sqlite3.connect(drawn / "charforge.db") as conn:
        conn.execute("UPDATE assets SET path = '../outside/x' WHERE id = ?", (row_id,))
    code, _, err = cli("show", "mira", "-w", drawn)
    assert code == 2 and err.count("\n") == 1 and "outside" in err  # reported clearly
    code, _, err = cli("delete", "mira", "--yes", "-w", drawn)
    assert code == 0, err
    assert (outside / "x").read_text() == "someone else's file"
    code, out, _ = cli("list", "--json", "-w", drawn)
    assert code == 0 and json.loads(out) == []


def test_a_deleted_database_beside_assets_is_reported_not_replaced(cli, drawn):
    (drawn / "charforge.db").unlink()
    for wal in drawn.glob("charforge.db-*"):
        wal.unlink()
    cards = drawn.parent / "cards"
    cards.mkdir()
    (cards / "x.toml").write_text('name = "x"\nprompt = "portrait of a boy"\n')
    for args in (["list"], ["create", "x", "--prompt", "p", "--no-render"], ["init"], ["import", cards]):
        code, _, err = cli(*args, "-w", drawn)
        assert code == 2 and err.count("\n") == 1, (args, err)
        assert "missing" in err
        assert not (drawn / "charforge.db").exists()  # no empty workspace was made in its place
    code, _, err = cli("db", "new", "--yes", "-w", drawn)  # the explicit action
    assert code == 0, err
    code, out, _ = cli("list", "--json", "-w", drawn)
    assert code == 0 and json.loads(out) == []


def test_an_emptied_database_beside_assets_is_reported_and_db_new_never_replaces_a_database(cli, drawn):
    before = dump(drawn)
    code, _, err = cli("db", "new", "--yes", "-w", drawn)
    assert code == 2 and "never replaces" in err and dump(drawn) == before
    for wal in drawn.glob("charforge.db-*"):
        wal.unlink()
    (drawn / "charforge.db").write_bytes(b"")
    code, _, err = cli("emote", "mira", "joy=0.8", "-w", drawn)
    assert code == 2 and err.count("\n") == 1 and "empty" in err
    assert (drawn / "charforge.db").stat().st_size == 0


def test_only_files_under_assets_are_ever_removed(drawn):
    """The store's one way to delete a file refuses the database and anything outside assets/."""
    import pytest

    from charforge.errors import IntegrityError, InvalidInput
    from charforge.paths import Workspace

    ws = Workspace(drawn)
    for bad in ("charforge.db", "assets", "../outside", "assets/../charforge.db", "/etc/passwd"):
        with pytest.raises((IntegrityError, InvalidInput)):
            ws.remove_asset(bad)
    assert (drawn / "charforge.db").is_file()
