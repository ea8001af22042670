"""Persistence of a workspace: SQLAlchemy models, the database with its migrations, tensor blobs."""

from charforge.store.db import Database
from charforge.store.models import AssetKind, EmotionSource, IdentityKind, JobStatus

__all__ = ["AssetKind", "Database", "EmotionSource", "IdentityKind", "JobStatus"]
