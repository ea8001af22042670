"""Queries on assets: rows of rendered files, keyed by (character, kind, state hash)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from charforge.store.models import AssetRecord


def one(session: Session, character_id: int, kind: str, state_hash: str) -> AssetRecord | None:
    return session.scalar(
        select(AssetRecord).where(
            AssetRecord.character_id == character_id, AssetRecord.kind == kind, AssetRecord.state_hash == state_hash
        )
    )


FOUND = (
    AssetRecord.kind, AssetRecord.state_hash, AssetRecord.path, AssetRecord.sha256, AssetRecord.size,
    AssetRecord.params, AssetRecord.created_at,
)  # fmt: skip


def found(session: Session, character_id: int, kind: str, state_hash: str) -> Row[Any] | None:
    """`one` as a plain row with the `Asset` fields, for lookups that change nothing (one per cached request)."""
    return session.execute(
        select(*FOUND).where(
            AssetRecord.character_id == character_id, AssetRecord.kind == kind, AssetRecord.state_hash == state_hash
        )
    ).first()


def listing(session: Session, character_id: int, kind: str | None = None) -> Sequence[AssetRecord]:
    """A character's assets, oldest first, optionally of one kind."""
    where = [AssetRecord.character_id == character_id]
    if kind is not None:
        where.append(AssetRecord.kind == kind)
    return session.scalars(select(AssetRecord).where(*where).order_by(AssetRecord.id)).all()


def used_paths(session: Session, paths: Iterable[str]) -> set[str]:
    """Which of `paths` some asset row still points to."""
    return set(session.scalars(select(AssetRecord.path).where(AssetRecord.path.in_(set(paths)))))
