"""The tables of a charforge workspace, as typed SQLAlchemy 2.x ORM models.

Schema changes are made with an Alembic revision in `charforge/migrations/versions/`; a test compares
these models with the migrated schema so the two cannot drift apart.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names, so batch migrations on SQLite can find them again.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC (SQLite has no time zones) and hands back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class IdentityKind(enum.StrEnum):
    """What an identity artifact holds; together they let the engine redraw the same character."""

    INVERTED_LATENTS = "inverted_latents"
    NULL_TEXT_EMBEDDINGS = "null_text_embeddings"
    INVERSION_OFFSETS = "inversion_offsets"
    TEXTUAL_INVERSION = "textual_inversion"
    LORA = "lora"
    MASK = "mask"
    # The picture the inversion was made from (uint8 HxWx3), so a new model can invert it again.
    BASE_IMAGE = "base_image"


class AssetKind(enum.StrEnum):
    CG = "cg"
    BGM = "bgm"
    SPRITE = "sprite"


class EmotionSource(enum.StrEnum):
    """Who set an emotion state; kept so a history can be audited (e.g. which states an LLM chose)."""

    API = "api"
    CLI = "cli"
    LLM_TOOL = "llm-tool"
    BATCH = "batch"


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime}


class CharacterRecord(Base):
    """One character. `version` increases on every write to the row; stale writers are detected by it."""

    __tablename__ = "characters"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    base_prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    seed: Mapped[int]
    model_ref: Mapped[str | None] = mapped_column(String(500))
    model_hash: Mapped[str | None] = mapped_column(String(64))
    # Per-character overrides of shipped data tables (emotion conditioning, music), as JSON.
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    current_state: Mapped[dict[str, Any] | None]
    current_state_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    version: Mapped[int] = mapped_column(nullable=False)

    __mapper_args__ = {"version_id_col": version}

    artifacts: Mapped[list[IdentityArtifactRecord]] = relationship(
        back_populates="character", cascade="all, delete-orphan", passive_deletes=True
    )
    emotions: Mapped[list[EmotionRecord]] = relationship(
        back_populates="character", cascade="all, delete-orphan", passive_deletes=True
    )
    assets: Mapped[list[AssetRecord]] = relationship(
        back_populates="character", cascade="all, delete-orphan", passive_deletes=True
    )


class IdentityArtifactRecord(Base):
    """Tensors of a character's identity as one safetensors blob, with the sha256 checked on every read."""

    __tablename__ = "identity_artifacts"
    __table_args__ = (UniqueConstraint("character_id", "kind", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    character_id: Mapped[int] = mapped_column(ForeignKey("characters.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    # Distinguishes several artifacts of one kind, e.g. masks named face / hair / outfit.
    name: Mapped[str] = mapped_column(String(64), default="main")
    data: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    character: Mapped[CharacterRecord] = relationship(back_populates="artifacts")


class EmotionRecord(Base):
    """One state a character was given. `character_version` is the version that write produced."""

    __tablename__ = "emotion_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    character_id: Mapped[int] = mapped_column(ForeignKey("characters.id", ondelete="CASCADE"), index=True)
    state: Mapped[dict[str, Any]]
    state_hash: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    character_version: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    character: Mapped[CharacterRecord] = relationship(back_populates="emotions")


class AssetRecord(Base):
    """A rendered file (CG, BGM, sprite) found again by the hash of the state it depicts."""

    __tablename__ = "assets"
    __table_args__ = (
        UniqueConstraint("character_id", "kind", "state_hash"),
        Index(None, "sha256"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    character_id: Mapped[int] = mapped_column(ForeignKey("characters.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    state_hash: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(300))  # relative to the workspace, POSIX separators
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    character: Mapped[CharacterRecord] = relationship(back_populates="assets")


class JobRecord(Base):
    """Long work (batch regeneration) that outlives one process: status, progress and the error if any.

    A job that makes one asset carries `key` (the asset's cache key): the unique (kind, character, key)
    lets planning run twice, or in two processes, without a second row for the same asset. `worker`
    names the process holding a running job (host:pid), so a claim left by a killed process is found
    and released; `result` points at the stored asset once the job is done.
    """

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("kind", "character_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    character_id: Mapped[int | None] = mapped_column(ForeignKey("characters.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value, index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    key: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    # What the finished job produced (plain JSON, e.g. the asset it rendered); None until then.
    result: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
