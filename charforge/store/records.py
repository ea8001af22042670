"""What the store hands out: frozen values read from the tables, detached from any session.

The domain never sees an ORM object, so no query can run lazily outside a unit of work and a value
stays valid after its session is closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from charforge.emotion.state import EmotionState
from charforge.errors import IntegrityError
from charforge.files import file_sha256
from charforge.paths import Workspace, sha256_bytes
from charforge.store.models import (
    AssetRecord,
    CharacterRecord,
    EmotionRecord,
    IdentityArtifactRecord,
)

if TYPE_CHECKING:
    import torch
    from sqlalchemy import Row


@dataclass(frozen=True)
class CharacterRow:
    """A character's row as read at `version` (what a `Character` handle shows)."""

    id: int
    name: str
    display_name: str
    prompt: str
    negative_prompt: str
    seed: int
    model_ref: str | None
    model_hash: str | None
    settings: dict[str, Any]
    current_state: dict[str, float] | None
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, rec: CharacterRecord | Row[Any]) -> CharacterRow:
        return cls(
            rec.id, rec.slug, rec.display_name, rec.base_prompt, rec.negative_prompt, rec.seed, rec.model_ref,
            rec.model_hash, dict(rec.settings), None if rec.current_state is None else dict(rec.current_state),
            rec.version, rec.created_at, rec.updated_at,
        )  # fmt: skip


@dataclass(frozen=True)
class ArtifactInfo:
    """An identity artifact without its tensors (cheap to list)."""

    kind: str
    name: str
    sha256: str
    size: int
    metadata: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, rec: IdentityArtifactRecord | Row[Any]) -> ArtifactInfo:
        return cls(rec.kind, rec.name, rec.sha256, rec.size, dict(rec.meta), rec.created_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "sha256": self.sha256,
            "size": self.size,
            "metadata": self.metadata,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class IdentityArtifact(ArtifactInfo):
    """An identity artifact with its tensors, read back bit-exactly and checked against its sha256."""

    tensors: dict[str, torch.Tensor]


@dataclass(frozen=True)
class EmotionEntry:
    """One recorded state; `version` is the character version that recording produced."""

    state: EmotionState
    state_hash: str
    source: str
    version: int
    created_at: datetime

    @classmethod
    def of(cls, rec: EmotionRecord) -> EmotionEntry:
        return cls(EmotionState(**rec.state), rec.state_hash, rec.source, rec.character_version, rec.created_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.components(),
            "state_hash": self.state_hash,
            "source": self.source,
            "version": self.version,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class Asset:
    """A rendered file of a character, addressed by its content and found again by `state_hash`."""

    kind: str
    state_hash: str
    relpath: PurePosixPath
    path: Path
    sha256: str
    size: int
    params: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, rec: AssetRecord | Row[Any], workspace: Workspace) -> Asset:
        rel = PurePosixPath(rec.path)
        path = workspace.asset_path(rel)
        return cls(rec.kind, rec.state_hash, rel, path, rec.sha256, rec.size, dict(rec.params), rec.created_at)

    def read_bytes(self) -> bytes:
        """The file's bytes, after checking they are still the bytes that were stored."""
        try:
            data = self.path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise IntegrityError(f"asset file {self.relpath} is missing from the workspace") from None
        if sha256_bytes(data) != self.sha256:
            raise IntegrityError(f"asset file {self.relpath} was modified: its sha256 no longer matches")
        return data

    def intact(self) -> bool:
        """Whether the file is there with the stored bytes (re-hashed only when size or mtime changed)."""
        return file_sha256(self.path) == self.sha256

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "state_hash": self.state_hash,
            "path": str(self.path),
            "relpath": self.relpath.as_posix(),
            "sha256": self.sha256,
            "size": self.size,
            "params": self.params,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class Job:
    """A unit of long work and how far it got."""

    id: int
    kind: str
    status: str
    character: str | None
    params: dict[str, Any]
    progress: float
    error: str | None
    created_at: datetime
    updated_at: datetime
    # jobs that make one asset: its cache key, the worker holding the job, tries, and where the asset is
    key: str | None = None
    worker: str | None = None
    attempts: int = 0
    result: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: getattr(self, k) for k in ("id", "kind", "status", "character", "params", "progress", "error",
                                             "key", "worker", "attempts", "result")},  # fmt: skip
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }
