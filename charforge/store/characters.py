"""Queries on the characters table, and the compare-and-swap every change of a character goes through."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from charforge.errors import ConflictError, NotFound
from charforge.store.models import AssetRecord, CharacterRecord, utcnow
from charforge.store.records import CharacterRow

ROW = (
    CharacterRecord.id, CharacterRecord.slug, CharacterRecord.display_name, CharacterRecord.base_prompt,
    CharacterRecord.negative_prompt, CharacterRecord.seed, CharacterRecord.model_ref, CharacterRecord.model_hash,
    CharacterRecord.settings, CharacterRecord.current_state, CharacterRecord.version, CharacterRecord.created_at,
    CharacterRecord.updated_at,
)  # fmt: skip


def named(session: Session, name: str) -> CharacterRow | None:
    """The row of the character called `name`, read as plain columns (every request by name starts here)."""
    rec = session.execute(select(*ROW).where(CharacterRecord.slug == name)).one_or_none()
    return None if rec is None else CharacterRow.of(rec)


def find(session: Session, name: str) -> CharacterRecord | None:
    return session.scalar(select(CharacterRecord).where(CharacterRecord.slug == name))


def all_rows(session: Session) -> Sequence[CharacterRecord]:
    return session.scalars(select(CharacterRecord).order_by(CharacterRecord.slug)).all()


def current(session: Session, row: CharacterRow, *, lock: bool = False) -> CharacterRecord:
    """The row of the character `row` was read from, whatever its version now.

    `lock` (writers) reads it with SELECT ... FOR UPDATE: on a server database a writer that read the
    row without it could be overtaken before its UPDATE (appends would then fail as stale), while
    SQLite's single writer already excludes that (the clause is not emitted there).
    """
    rec = session.get(CharacterRecord, row.id, with_for_update=True if lock else None)
    if rec is None:
        raise NotFound(f"character {row.name!r} no longer exists")
    return rec


def for_change(session: Session, row: CharacterRow) -> CharacterRecord:
    """The row, provided nobody changed it since `row` was read (compare-and-swap)."""
    rec = current(session, row, lock=True)
    if rec.version != row.version:
        raise ConflictError(
            f"character {row.name!r} was changed by another writer (you have version {row.version}, "
            f"the store has {rec.version}); call refresh() and retry"
        )
    return rec


def commit_change(session: Session, rec: CharacterRecord) -> CharacterRow:
    """Write a change of the row: UPDATE ... WHERE version = old (SQLAlchemy's version_id_col)."""
    rec.updated_at = utcnow()
    try:
        session.flush()
    except StaleDataError:
        raise ConflictError(f"character {rec.slug!r} was changed by another writer; refresh and retry") from None
    return CharacterRow.of(rec)


_TABLE = CharacterRecord.__table__
# Built once: a chat server records a state per turn, and building the statements cost more than running them.
_LOCK_ROW = select(*ROW).where(CharacterRecord.id == bindparam("id")).with_for_update()
_SET_STATE = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("row_id"), _TABLE.c.version == bindparam("old"))
    .values(current_state=bindparam("state"), current_state_hash=bindparam("hash"), updated_at=bindparam("now"),
            version=bindparam("new"))
)  # fmt: skip


def record_state(
    session: Session | Connection, row: CharacterRow, state: dict[str, float], state_hash: str
) -> CharacterRow:
    """Make `state` the current one, whatever the version (an append, never a conflict): the row read with
    SELECT ... FOR UPDATE (see `current`), then one UPDATE that moves the version on by one.

    Core statements instead of the ORM's unit of work: a chat server records a state per turn while
    holding the write lock, and every other writer waits for as long as this takes.
    """
    rec = session.execute(_LOCK_ROW, {"id": row.id}).one_or_none()
    if rec is None:
        raise NotFound(f"character {row.name!r} no longer exists")
    now = utcnow()
    values = {"state": state, "hash": state_hash, "now": now}
    changed = session.execute(_SET_STATE, {"row_id": rec.id, "old": rec.version, "new": rec.version + 1, **values})
    if changed.rowcount != 1:  # only if the row changed under a lock that should have excluded that
        raise ConflictError(f"character {rec.slug!r} was changed by another writer; refresh and retry")
    return replace(CharacterRow.of(rec), current_state=dict(state), version=rec.version + 1, updated_at=now)


def asset_paths(session: Session, character_id: int) -> list[str]:
    return list(session.scalars(select(AssetRecord.path).where(AssetRecord.character_id == character_id)))
