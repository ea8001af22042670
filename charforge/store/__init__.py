"""Persistence of a workspace: SQLAlchemy models, the database with its migrations, tensor blobs, and
the repository holding every query (`Repository`, `CharacterStore`) with the values it hands out."""

from charforge.store.character_store import CharacterStore
from charforge.store.db import Database
from charforge.store.models import AssetKind, EmotionSource, IdentityKind, JobStatus
from charforge.store.records import (
    ArtifactInfo,
    Asset,
    CharacterRow,
    EmotionEntry,
    IdentityArtifact,
    Job,
)
from charforge.store.repository import Repository

__all__ = [
    "ArtifactInfo",
    "Asset",
    "AssetKind",
    "CharacterRow",
    "CharacterStore",
    "Database",
    "EmotionEntry",
    "EmotionSource",
    "IdentityArtifact",
    "IdentityKind",
    "Job",
    "JobStatus",
    "Repository",
]
