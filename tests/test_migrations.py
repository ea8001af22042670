"""Alembic migrations: up from empty, down to base, and data surviving an upgrade from the first revision."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from charforge import EmotionState, Forge
from charforge.errors import InvalidInput
from charforge.store import Database
from charforge.store.models import Base

FIRST = "0001"


def _tables(path: Path) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        con.close()


def _rows(path: Path, table: str, columns: str = "*") -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute(f"SELECT {columns} FROM {table} ORDER BY id").fetchall()
    finally:
        con.close()


def test_revision_chain_has_at_least_two_steps():
    revs = list(Database.script().walk_revisions())
    assert len(revs) >= 2
    assert revs[-1].revision == FIRST and revs[-1].down_revision is None


def test_upgrade_from_empty_and_downgrade_to_base(tmp_path):
    db = Database(tmp_path / "charforge.db")
    assert db.current_revision() is None
    assert db.upgrade() == Database.head_revision()
    assert {"characters", "identity_artifacts", "emotion_history", "assets", "jobs"} <= _tables(db.path)
    assert db.downgrade("base") is None
    assert _tables(db.path) == {"alembic_version"}
    assert db.upgrade() == Database.head_revision()  # and back up again
    db.close()


def test_models_match_the_migrated_schema(tmp_path):
    db = Database(tmp_path / "charforge.db")
    db.upgrade()
    engine = create_engine(f"sqlite:///{db.path}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    db.close()
    assert diff == []


def _fill_first_revision(path: Path) -> None:
    """Rows as charforge at revision 0001 wrote them, inserted with plain SQL (no current models)."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA foreign_keys=ON")
    now = "2025-01-01 12:00:00.000000"
    for i, slug in enumerate(["mira", "nell"], start=1):
        con.execute(
            "INSERT INTO characters (id, slug, display_name, base_prompt, negative_prompt, seed, model_ref, "
            "model_hash, current_state, current_state_hash, created_at, updated_at, version) "
            "VALUES (?, ?, ?, ?, '', ?, NULL, NULL, ?, ?, ?, ?, ?)",
            (i, slug, slug.title(), f"portrait of {slug}", 7 * i, '{"joy": 0.5}', "c" * 64, now, now, 3),
        )
        con.execute(
            "INSERT INTO identity_artifacts (character_id, kind, name, data, sha256, size, metadata, created_at) "
            "VALUES (?, 'mask', 'face', ?, ?, 4, '{\"method\": \"user\"}', ?)",
            (i, b"\x00\x01\x02\x03", "d" * 64, now),
        )
        for v in range(2):
            con.execute(
                "INSERT INTO emotion_history (character_id, state, state_hash, source, character_version, created_at) "
                "VALUES (?, '{\"joy\": 0.5}', ?, 'cli', ?, ?)",
                (i, "c" * 64, v + 2, now),
            )
        con.execute(
            "INSERT INTO assets (character_id, kind, state_hash, path, sha256, size, params, created_at) "
            "VALUES (?, 'cg', ?, ?, ?, 3, '{\"steps\": 20}', ?)",
            (i, "c" * 64, f"assets/cg/ee/{'e' * 63}{i}.png", "e" * 63 + str(i), now),
        )
    con.commit()
    con.close()


TABLES = ("characters", "identity_artifacts", "emotion_history", "assets")


def test_data_survives_upgrade_from_the_first_revision(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    db = Database(ws / "charforge.db")
    db.upgrade(FIRST)
    _fill_first_revision(db.path)
    before = {t: _rows(db.path, t) for t in TABLES}
    db.close()

    with Forge.open(ws) as forge:  # opening migrates to head
        assert forge.db.current_revision() == Database.head_revision()
        for table in TABLES:  # every old row, every old column, byte for byte
            old_columns = ", ".join(_columns_at_first_revision(tmp_path, table))
            assert _rows(ws / "charforge.db", table, old_columns) == before[table], table
        mira = forge.get("mira")
        assert (mira.prompt, mira.seed, mira.version, mira.settings) == ("portrait of mira", 7, 3, {})
        assert mira.current_state() == EmotionState(joy=0.5)
        assert [e.version for e in mira.store.history()] == [2, 3]
        assert [(a.kind, a.name, a.metadata) for a in mira.store.identity()] == [("mask", "face", {"method": "user"})]
        assert mira.store.assets()[0].params == {"steps": 20}
        mira.record_emotion({"fear": 0.2})  # and the upgraded database is writable through the API
        assert forge.get("mira").version == 4


def _columns_at_first_revision(tmp_path: Path, table: str) -> list[str]:
    probe = tmp_path / "probe.db"
    if not probe.exists():
        Database(probe).upgrade(FIRST)
    con = sqlite3.connect(probe)
    try:
        return [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
    finally:
        con.close()


def test_downgrade_to_first_revision_keeps_rows_of_surviving_tables(tmp_path):
    with Forge.open(tmp_path) as forge:
        mira = forge.create("mira", prompt="portrait of a girl", settings={"music": {"arousal_offset": 0.5}})
        mira.record_emotion({"joy": 0.7})
        forge.create_job("regenerate")
    db = Database(tmp_path / "charforge.db")
    assert db.downgrade(FIRST) == FIRST
    assert "jobs" not in _tables(db.path)
    # Batch migrations recreate the characters table; its children must not be cascade-deleted.
    assert len(_rows(db.path, "emotion_history")) == 1
    assert [r[0] for r in _rows(db.path, "characters", "slug")] == ["mira"]
    db.close()


def test_bad_revisions_are_clear_errors(tmp_path):
    db = Database(tmp_path / "charforge.db")
    db.upgrade()
    with pytest.raises(InvalidInput, match="migration failed"):
        db.downgrade("nonsense")
    assert db.current_revision() == Database.head_revision()
    db.close()


def test_database_from_a_newer_charforge_is_refused(tmp_path):
    db = Database(tmp_path / "charforge.db")
    db.upgrade()
    con = sqlite3.connect(db.path)
    con.execute("UPDATE alembic_version SET version_num = '9999'")
    con.commit()
    con.close()
    with pytest.raises(InvalidInput, match="does not know"):
        db.ensure_current()
    db.close()


def test_migrations_ship_inside_the_package():
    import charforge

    folder = Path(charforge.__file__).parent / "migrations"
    assert (folder / "env.py").is_file() and (folder / "script.py.mako").is_file()
    assert len(list((folder / "versions").glob("*.py"))) >= 2
