"""Queries on the emotion history: appended states, oldest first."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.orm import Session

from charforge.emotion.state import EmotionState
from charforge.store.models import EmotionRecord, utcnow
from charforge.store.records import EmotionEntry

_APPEND = insert(EmotionRecord.__table__)  # built once (see `append`)


def append(
    session: Session | Connection, character_id: int, state: dict[str, float], state_hash: str, source: str,
    version: int,
) -> EmotionEntry:
    """Add one state to the history, as one INSERT built once (no ORM object: a chat server records a
    state per turn)."""
    now = utcnow()
    session.execute(
        _APPEND,
        {"character_id": character_id, "state": state, "state_hash": state_hash, "source": source,
         "character_version": version, "created_at": now},
    )  # fmt: skip
    return EmotionEntry(EmotionState(**state), state_hash, source, version, now)


def recent(session: Session, character_id: int, limit: int | None) -> list[EmotionRecord]:
    """The last `limit` states (all with None), oldest first."""
    query = select(EmotionRecord).where(EmotionRecord.character_id == character_id).order_by(EmotionRecord.id.desc())
    if limit is not None:
        query = query.limit(limit)
    rows: Sequence[EmotionRecord] = session.scalars(query).all()
    return list(reversed(rows))


def count(session: Session, character_id: int) -> int:
    return session.scalar(select(func.count()).where(EmotionRecord.character_id == character_id)) or 0
