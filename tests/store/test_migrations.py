"""Alembic migrations: up from empty, down to base, and data surviving an upgrade from the first revision."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, Table, create_engine, inspect, select, text

from charforge import EmotionState, Forge
from charforge.errors import InvalidInput
from charforge.store import Database
from charforge.store.models import Base

FIRST = "0001"


@pytest.fixture
def url(tmp_path, db_url) -> str:
    """An empty database: a SQLite file, or a fresh database on the test PostgreSQL server."""
    if db_url:
        return db_url
    (tmp_path / "db").mkdir()
    return f"sqlite:///{tmp_path / 'db' / 'charforge.db'}"


def _engine(url: str):  # type: ignore[no-untyped-def]
    return create_engine(url)


def _tables(url: str) -> set[str]:
    engine = _engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _rows(url: str, table: str, columns: list[str] | None = None) -> list[tuple]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            reflected = Table(table, MetaData(), autoload_with=conn)
            picked = [reflected.c[name] for name in columns] if columns else list(reflected.c)
            return [tuple(r) for r in conn.execute(select(*picked).order_by(reflected.c.id))]
    finally:
        engine.dispose()


def _columns(url: str, table: str) -> list[str]:
    engine = _engine(url)
    try:
        return [c["name"] for c in inspect(engine).get_columns(table)]
    finally:
        engine.dispose()


def _sql(url: str, statement: str) -> None:
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def test_revision_chain_has_at_least_two_steps():
    revs = list(Database.script().walk_revisions())
    assert len(revs) >= 2
    assert revs[-1].revision == FIRST and revs[-1].down_revision is None


def test_upgrade_from_empty_and_downgrade_to_base(url):
    db = Database.from_url(url)
    assert db.current_revision() is None
    assert db.upgrade() == Database.head_revision()
    assert {"characters", "identity_artifacts", "emotion_history", "assets", "jobs"} <= _tables(url)
    assert db.downgrade("base") is None
    assert _tables(url) == {"alembic_version"}
    assert db.upgrade() == Database.head_revision()  # and back up again
    db.close()


def test_models_match_the_migrated_schema(url):
    db = Database.from_url(url)
    db.upgrade()
    engine = _engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    db.close()
    assert diff == []


def _fill_first_revision(url: str) -> None:
    """Rows as charforge at revision 0001 wrote them, inserted through the tables reflected from the
    database at that revision (no current models), so the same rows go into SQLite and PostgreSQL."""
    now = datetime(2025, 1, 1, 12, 0, 0)
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            meta = MetaData()
            table = {name: Table(name, meta, autoload_with=conn) for name in TABLES}
            for i, slug in enumerate(["mira", "nell"], start=1):
                conn.execute(table["characters"].insert().values(
                    id=i, slug=slug, display_name=slug.title(), base_prompt=f"portrait of {slug}", negative_prompt="",
                    seed=7 * i, model_ref=None, model_hash=None, current_state={"joy": 0.5},
                    current_state_hash="c" * 64, created_at=now, updated_at=now, version=3))
                conn.execute(table["identity_artifacts"].insert().values(
                    character_id=i, kind="mask", name="face", data=b"\x00\x01\x02\x03", sha256="d" * 64, size=4,
                    metadata={"method": "user"}, created_at=now))
                for v in range(2):
                    conn.execute(table["emotion_history"].insert().values(
                        character_id=i, state={"joy": 0.5}, state_hash="c" * 64, source="cli",
                        character_version=v + 2, created_at=now))
                conn.execute(table["assets"].insert().values(
                    character_id=i, kind="cg", state_hash="c" * 64, path=f"assets/cg/ee/{'e' * 63}{i}.png",
                    sha256="e" * 63 + str(i), size=3, params={"steps": 20}, created_at=now))
    finally:
        engine.dispose()  # fmt: skip


TABLES = ("characters", "identity_artifacts", "emotion_history", "assets")


@pytest.mark.slow
def test_data_survives_upgrade_from_the_first_revision(tmp_path, url):
    ws = tmp_path / "ws"
    ws.mkdir()
    db = Database.from_url(url)
    db.upgrade(FIRST)
    _fill_first_revision(url)
    old_columns = {t: _columns(url, t) for t in TABLES}
    before = {t: _rows(url, t) for t in TABLES}
    db.close()

    with Forge.open(ws, db_url=url) as forge:  # opening migrates to head
        assert forge.db.current_revision() == Database.head_revision()
        for table in TABLES:  # every old row, every old column, byte for byte
            assert _rows(url, table, old_columns[table]) == before[table], table
        mira = forge.get("mira")
        assert (mira.prompt, mira.seed, mira.version, mira.settings) == ("portrait of mira", 7, 3, {})
        assert mira.current_state() == EmotionState(joy=0.5)
        assert [e.version for e in mira.store.history()] == [2, 3]
        assert [(a.kind, a.name, a.metadata) for a in mira.store.identity()] == [("mask", "face", {"method": "user"})]
        assert mira.store.assets()[0].params == {"steps": 20}
        mira.record_emotion({"fear": 0.2})  # and the upgraded database is writable through the API
        assert forge.get("mira").version == 4


def test_downgrade_to_first_revision_keeps_rows_of_surviving_tables(tmp_path, url):
    with Forge.open(tmp_path / "ws", db_url=url) as forge:
        mira = forge.create("mira", prompt="portrait of a girl", settings={"music": {"arousal_offset": 0.5}})
        mira.record_emotion({"joy": 0.7})
        forge.create_job("regenerate")
    db = Database.from_url(url)
    assert db.downgrade(FIRST) == FIRST
    assert "jobs" not in _tables(url)
    # Batch migrations recreate the characters table; its children must not be cascade-deleted.
    assert len(_rows(url, "emotion_history")) == 1
    assert [r[0] for r in _rows(url, "characters", ["slug"])] == ["mira"]
    db.close()


def test_bad_revisions_are_clear_errors(url):
    db = Database.from_url(url)
    db.upgrade()
    with pytest.raises(InvalidInput, match="migration failed"):
        db.downgrade("nonsense")
    assert db.current_revision() == Database.head_revision()
    db.close()


def test_database_from_a_newer_charforge_is_refused(url):
    db = Database.from_url(url)
    db.upgrade()
    _sql(url, "UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(InvalidInput, match="does not know"):
        db.ensure_current()
    db.close()


def test_migrations_ship_inside_the_package():
    import charforge

    folder = Path(charforge.__file__).parent / "migrations"
    assert (folder / "env.py").is_file() and (folder / "script.py.mako").is_file()
    assert len(list((folder / "versions").glob("*.py"))) >= 2
