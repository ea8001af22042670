"""The jobs table: units of long work (batch regeneration) that outlive one process."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from charforge.canonical import canonical_json
from charforge.errors import InvalidInput, NotFound
from charforge.paths import validate_slug
from charforge.store import characters
from charforge.store.db import Database
from charforge.store.models import CharacterRecord, JobRecord, JobStatus, utcnow
from charforge.store.records import Job
from charforge.validation import parse_enum

_JOB_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class JobRepository:
    """Create, advance and list jobs; each call is one unit of work."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, kind: str, params: Mapping[str, Any] | None = None, *, character: str | None = None) -> Job:
        """Record a unit of long work (queued); workers move it along with `update`."""
        if not (isinstance(kind, str) and _JOB_KIND.fullmatch(kind)):
            raise InvalidInput(f"invalid job kind {kind!r}")
        params = dict(params or {})
        canonical_json(params)
        with self.db.write() as session:
            char_id = None
            if character is not None:
                validate_slug(character)
                rec = characters.find(session, character)
                if rec is None:
                    raise NotFound(f"no character named {character!r}")
                char_id = rec.id
            job = JobRecord(kind=kind, character_id=char_id, params=params)
            session.add(job)
            session.flush()
            return _job(session, job)

    def update(
        self,
        job_id: int,
        *,
        status: JobStatus | str | None = None,
        progress: float | None = None,
        error: str | None = None,
    ) -> Job:
        with self.db.write() as session:
            job = _get(session, job_id)
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
            return _job(session, job)

    def get(self, job_id: int) -> Job:
        with self.db.read() as session:
            return _job(session, _get(session, job_id))

    def list(self, status: JobStatus | str | None = None) -> list[Job]:
        query = select(JobRecord).order_by(JobRecord.id)
        if status is not None:
            query = query.where(JobRecord.status == parse_enum(JobStatus, status, "job status").value)
        with self.db.read() as session:
            return [_job(session, j) for j in session.scalars(query)]


def _get(session: Session, job_id: int) -> JobRecord:
    job = session.get(JobRecord, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


def _job(session: Session, job: JobRecord) -> Job:
    slug = None
    if job.character_id is not None:
        slug = session.scalar(select(CharacterRecord.slug).where(CharacterRecord.id == job.character_id))
    return Job(job.id, job.kind, job.status, slug, dict(job.params), job.progress, job.error, job.created_at,
               job.updated_at)
