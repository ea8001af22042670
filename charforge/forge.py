"""`Forge`: a workspace opened for use — the cast of characters, their files and background jobs."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from charforge.canonical import canonical_json
from charforge.cards import CharacterCard
from charforge.character.handle import Character, IdentityBuilder
from charforge.errors import AlreadyExists, InvalidInput, NotFound
from charforge.paths import Workspace, validate_slug
from charforge.store.db import Database
from charforge.store.models import AssetRecord, CharacterRecord, JobRecord, JobStatus, utcnow
from charforge.validation import parse_enum

log = logging.getLogger(__name__)

_JOB_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    status: str
    character: str | None
    params: dict[str, Any]
    progress: float
    error: str | None
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: getattr(self, k) for k in ("id", "kind", "status", "character", "params", "progress", "error")},
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


class Forge:
    """A charforge workspace: SQLite database plus asset files, created and migrated on open.

    Not fork-safe (it holds database connections): open one per process.
    """

    def __init__(
        self, workspace: Workspace, db: Database, *, identity_builder: IdentityBuilder | None = None
    ) -> None:
        self.workspace = workspace
        self.db = db
        self.identity_builder = identity_builder

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        identity_builder: IdentityBuilder | None = None,
    ) -> Forge:
        """Open the workspace at `path` (default: $CHARFORGE_HOME, else ./.charforge), creating and
        migrating it as needed.

        `identity_builder`, if given, is run by `create` to render the base CG and store the identity.
        """
        workspace = Workspace(path)
        workspace.ensure()
        db = Database(workspace.db_path)
        try:
            db.ensure_current()
        except BaseException:
            db.close()
            raise
        return cls(workspace, db, identity_builder=identity_builder)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Forge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Forge({str(self.workspace.root)!r})"

    # characters ---------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        prompt: str,
        negative_prompt: str = "",
        seed: int | None = None,
        model: str | None = None,
        display_name: str | None = None,
        settings: Mapping[str, Any] | None = None,
        build_identity: bool = True,
        build_options: Mapping[str, Any] | None = None,
    ) -> Character:
        """Create a character. Without `seed`, one is derived from the name (stable across runs).

        When the forge has an `identity_builder` and `build_identity` is true, it runs next (render the
        base CG, invert it, store the identity, with `build_options`); if it fails the character is
        removed again, so a failed create leaves nothing behind.
        """
        card = CharacterCard.build(
            name=name,
            prompt=prompt,
            negative_prompt=negative_prompt,
            seed=seed,
            model=model,
            display_name=display_name,
            settings=dict(settings or {}),
        )
        return self.create_from_card(card, build_identity=build_identity, build_options=build_options)

    def create_from_card(
        self,
        card: CharacterCard,
        *,
        build_identity: bool = True,
        build_options: Mapping[str, Any] | None = None,
    ) -> Character:
        with self.db.write() as session:
            if self._find(session, card.name) is not None:
                raise AlreadyExists(f"a character named {card.name!r} already exists")
            rec = CharacterRecord(
                slug=card.name,
                display_name=card.resolved_display_name(),
                base_prompt=card.prompt,
                negative_prompt=card.negative_prompt,
                seed=card.resolved_seed(),
                model_ref=card.model,
                settings=card.settings,
            )
            session.add(rec)
            session.flush()
            character = Character(self, rec)
        log.info("created character %s", card.name)
        if build_identity and self.identity_builder is not None:
            try:
                self.identity_builder(character, dict(build_options or {}))
            except BaseException:
                log.warning("building the identity of %s failed; removing it", card.name)
                self.delete(card.name)
                raise
            character.refresh()
        return character

    def get(self, name: str) -> Character:
        validate_slug(name)
        with self.db.read() as session:
            rec = self._find(session, name)
            if rec is None:
                raise NotFound(f"no character named {name!r}")
            return Character(self, rec)

    def exists(self, name: str) -> bool:
        validate_slug(name)
        with self.db.read() as session:
            return self._find(session, name) is not None

    def list(self) -> list[Character]:
        """All characters, by name."""
        with self.db.read() as session:
            rows = session.scalars(select(CharacterRecord).order_by(CharacterRecord.slug)).all()
            return [Character(self, r) for r in rows]

    def rename(self, name: str, new_name: str) -> Character:
        return self.get(name).rename(new_name)

    def delete(self, name: str) -> None:
        """Remove a character with its identity blobs, history and asset files (files other characters
        also use are kept)."""
        validate_slug(name)
        with self.db.write() as session:
            rec = self._find(session, name)
            if rec is None:
                raise NotFound(f"no character named {name!r}")
            paths = list(session.scalars(select(AssetRecord.path).where(AssetRecord.character_id == rec.id)))
            session.delete(rec)  # children go with it (ON DELETE CASCADE)
        self._remove_unreferenced(paths)
        log.info("deleted character %s and %d asset files", name, len(paths))

    @staticmethod
    def _find(session: Session, name: str) -> CharacterRecord | None:
        return session.scalar(select(CharacterRecord).where(CharacterRecord.slug == name))

    def _remove_unreferenced(self, paths: Iterable[str]) -> None:
        paths = set(paths)
        if not paths:
            return
        with self.db.read() as session:
            used = set(session.scalars(select(AssetRecord.path).where(AssetRecord.path.in_(paths))))
        for path in sorted(paths - used):
            self.workspace.remove(path)

    # jobs ---------------------------------------------------------------------------------------

    def create_job(self, kind: str, params: Mapping[str, Any] | None = None, *, character: str | None = None) -> Job:
        """Record a unit of long work (queued); workers move it along with `update_job`."""
        if not (isinstance(kind, str) and _JOB_KIND.fullmatch(kind)):
            raise InvalidInput(f"invalid job kind {kind!r}")
        params = dict(params or {})
        canonical_json(params)
        with self.db.write() as session:
            char_id = None
            if character is not None:
                validate_slug(character)
                rec = self._find(session, character)
                if rec is None:
                    raise NotFound(f"no character named {character!r}")
                char_id = rec.id
            job = JobRecord(kind=kind, character_id=char_id, params=params)
            session.add(job)
            session.flush()
            return self._job(session, job)

    def update_job(
        self, job_id: int, *, status: JobStatus | str | None = None, progress: float | None = None, error: str | None = None
    ) -> Job:
        with self.db.write() as session:
            job = session.get(JobRecord, job_id)
            if job is None:
                raise NotFound(f"no job with id {job_id}")
            if status is not None:
                job.status = parse_enum(JobStatus, status, "job status").value
            if progress is not None:
                if not (isinstance(progress, (int, float)) and 0.0 <= progress <= 1.0):
                    raise InvalidInput(f"job progress must be within [0, 1], got {progress!r}")
                job.progress = float(progress)
            if error is not None:
                job.error = error
            job.updated_at = utcnow()
            session.flush()
            return self._job(session, job)

    def get_job(self, job_id: int) -> Job:
        with self.db.read() as session:
            job = session.get(JobRecord, job_id)
            if job is None:
                raise NotFound(f"no job with id {job_id}")
            return self._job(session, job)

    def jobs(self, status: JobStatus | str | None = None) -> list[Job]:
        query = select(JobRecord).order_by(JobRecord.id)
        if status is not None:
            query = query.where(JobRecord.status == parse_enum(JobStatus, status, "job status").value)
        with self.db.read() as session:
            return [self._job(session, j) for j in session.scalars(query)]

    @staticmethod
    def _job(session: Session, job: JobRecord) -> Job:
        slug = None
        if job.character_id is not None:
            slug = session.scalar(select(CharacterRecord.slug).where(CharacterRecord.id == job.character_id))
        return Job(
            job.id, job.kind, job.status, slug, dict(job.params), job.progress, job.error, job.created_at, job.updated_at
        )
