"""Queries on identity artifacts: safetensors blobs of a character, one per (kind, name)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, delete, select
from sqlalchemy.orm import Session

from charforge.store.models import IdentityArtifactRecord


def replace(
    session: Session, character_id: int, kind: str, name: str, data: bytes, sha256: str, meta: dict[str, Any]
) -> IdentityArtifactRecord:
    remove(session, character_id, kind, name)
    rec = IdentityArtifactRecord(
        character_id=character_id, kind=kind, name=name, data=data, sha256=sha256, size=len(data), meta=meta
    )
    session.add(rec)
    session.flush()
    return rec


def one(session: Session, character_id: int, kind: str, name: str) -> IdentityArtifactRecord | None:
    return session.scalar(
        select(IdentityArtifactRecord).where(
            IdentityArtifactRecord.character_id == character_id,
            IdentityArtifactRecord.kind == kind,
            IdentityArtifactRecord.name == name,
        )
    )


LISTED = (
    IdentityArtifactRecord.kind, IdentityArtifactRecord.name, IdentityArtifactRecord.sha256,
    IdentityArtifactRecord.size, IdentityArtifactRecord.meta, IdentityArtifactRecord.created_at,
)  # fmt: skip


def listing(session: Session, character_id: int) -> Sequence[Row[Any]]:
    """All artifacts of a character without their blobs, by kind and name: plain rows with the
    `ArtifactInfo` fields (every cache lookup reads this listing; rows skip the ORM's identity map)."""
    return session.execute(
        select(*LISTED)
        .where(IdentityArtifactRecord.character_id == character_id)
        .order_by(IdentityArtifactRecord.kind, IdentityArtifactRecord.name)
    ).all()


def remove(session: Session, character_id: int, kind: str | None = None, name: str | None = None) -> int:
    """Delete artifacts (all, all of a kind, or one); returns how many."""
    where = [IdentityArtifactRecord.character_id == character_id]
    if kind is not None:
        where.append(IdentityArtifactRecord.kind == kind)
    if name is not None:
        where.append(IdentityArtifactRecord.name == name)
    return session.execute(delete(IdentityArtifactRecord).where(*where)).rowcount
