"""The jobs table: units of long work (batch regeneration) that outlive one process.

Jobs that make one asset form a queue: planned once per (kind, character, asset key), claimed and
settled by compare-and-set (`UPDATE ... WHERE status = <expected> [AND worker = me]`), which is atomic
on SQLite (one writer at a time) and on PostgreSQL (a second updater waits for the first, re-checks
the condition and matches nothing), so two workers never both own a job.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from charforge.canonical import canonical_json
from charforge.errors import ConflictError, InvalidInput, NotFound
from charforge.paths import validate_slug
from charforge.store import characters
from charforge.store.db import Database
from charforge.store.models import CharacterRecord, JobRecord, JobStatus, utcnow
from charforge.store.records import Job
from charforge.validation import parse_enum

_JOB_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_OPEN = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
_REQUEUE = {"status": JobStatus.QUEUED.value, "worker": None}


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
        result: Mapping[str, Any] | None = None,
    ) -> Job:
        if result is not None:
            result = dict(result)
            canonical_json(result)  # rejects values that are not plain JSON
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
            if result is not None:
                job.result = result
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


    # the queue of asset jobs (batch regeneration): every change a compare-and-set ------------------

    def plan_job(
        self, kind: str, character: str, key: str, params: Mapping[str, Any], *, done: Mapping[str, Any] | None = None
    ) -> int:
        """The one job row of (kind, character, key), made to agree with the asset store.

        With `done` (the asset exists) the row is recorded as done pointing at it; without, a finished
        or failed row is queued again and an open one (queued, or running elsewhere) is left alone.
        """
        params = dict(params)
        canonical_json(params)
        result = None if done is None else dict(done)
        for _ in range(2):  # a concurrent planner may insert the same row between our select and insert
            try:
                with self.db.write() as session:
                    owner = characters.find(session, character)
                    if owner is None:
                        raise NotFound(f"no character named {character!r}")
                    character_id = owner.id
                    rec = session.scalar(
                        select(JobRecord).where(
                            JobRecord.kind == kind, JobRecord.character_id == character_id, JobRecord.key == key
                        )
                    )
                    if rec is None:
                        rec = JobRecord(kind=kind, character_id=character_id, key=key, params=params)
                        session.add(rec)
                    if result is not None and rec.status != JobStatus.DONE.value:
                        rec.status, rec.result, rec.progress, rec.error = JobStatus.DONE.value, result, 1.0, None
                    elif result is None and rec.status not in _OPEN:
                        rec.status, rec.result, rec.progress, rec.error = JobStatus.QUEUED.value, None, 0.0, None
                        rec.params, rec.worker = params, None
                    rec.updated_at = utcnow()
                    session.flush()
                    return rec.id
            except sa_exc.IntegrityError:
                continue
        raise ConflictError(
            f"could not record the {kind} job {key[:12]} of {character!r}: another planner kept winning"
        )

    def many(self, ids: Iterable[int]) -> list[Job]:
        ids = list(ids)
        with self.db.read() as session:
            rows = session.execute(
                select(JobRecord, CharacterRecord.slug)
                .join(CharacterRecord, CharacterRecord.id == JobRecord.character_id, isouter=True)
                .where(JobRecord.id.in_(ids))
                .order_by(JobRecord.id)
            ).all()
            return [_row(rec, slug) for rec, slug in rows]

    def counts(self, ids: Iterable[int]) -> Counter[str]:
        ids = list(ids)
        with self.db.read() as session:
            return Counter(session.scalars(select(JobRecord.status).where(JobRecord.id.in_(ids))))

    def claim(self, ids: Iterable[int], worker: str, limit: int, *, alone: Collection[str] = ()) -> list[Job]:
        """Take up to `limit` queued jobs among `ids`, all of one kind and one character (so they can be
        rendered together), oldest first; one only when the oldest is of a kind in `alone` (work that runs
        one job at a time: the others would show as running while they wait). Empty when nothing is left."""
        ids = list(ids)
        with self.db.write() as session:
            first = session.scalar(
                select(JobRecord).where(JobRecord.id.in_(ids), JobRecord.status == JobStatus.QUEUED.value)
                .order_by(JobRecord.id).limit(1)
            )  # fmt: skip
            if first is None:
                return []
            candidates = session.scalars(
                select(JobRecord.id).where(
                    JobRecord.id.in_(ids), JobRecord.status == JobStatus.QUEUED.value,
                    JobRecord.kind == first.kind, JobRecord.character_id == first.character_id,
                ).order_by(JobRecord.id).limit(1 if first.kind in alone else limit)
            ).all()  # fmt: skip
            take = {"status": JobStatus.RUNNING.value, "worker": worker, "attempts": JobRecord.attempts + 1,
                    "progress": 0.0}  # fmt: skip
            mine = [job_id for job_id in candidates if self._set(session, job_id, JobStatus.QUEUED, None, take)]
            session.expire_all()
            slug = session.scalar(select(CharacterRecord.slug).where(CharacterRecord.id == first.character_id))
            rows = session.scalars(select(JobRecord).where(JobRecord.id.in_(mine)).order_by(JobRecord.id)).all()
            return [_row(rec, slug) for rec in rows]

    @staticmethod
    def _set(session: Session, job_id: int, expect: JobStatus, owner: str | None, values: dict[str, Any]) -> bool:
        """Compare-and-set one job: move it from `expect` (held by `owner` if given) to `values`."""
        where = [JobRecord.id == job_id, JobRecord.status == expect.value]
        if owner is not None:
            where.append(JobRecord.worker == owner)
        statement = update(JobRecord).where(*where).values(updated_at=utcnow(), **values)
        return session.execute(statement.execution_options(synchronize_session=False)).rowcount == 1

    def finish(self, job_id: int, worker: str, result: Mapping[str, Any]) -> bool:
        """Mark a job this worker holds as done, pointing at its stored asset (written before this call)."""
        result = dict(result)
        canonical_json(result)
        with self.db.write() as session:
            done = {"status": JobStatus.DONE.value, "progress": 1.0, "result": result, "error": None}
            return self._set(session, job_id, JobStatus.RUNNING, worker, done)

    def fail(self, job_id: int, worker: str, error: str) -> bool:
        with self.db.write() as session:
            failed = {"status": JobStatus.FAILED.value, "error": error[:2000]}
            return self._set(session, job_id, JobStatus.RUNNING, worker, failed)

    def release(self, ids: Iterable[int], worker: str) -> int:
        """Give running jobs this worker holds back to the queue (it is stopping before finishing them)."""
        with self.db.write() as session:
            return sum(
                self._set(session, job_id, JobStatus.RUNNING, worker, _REQUEUE) for job_id in ids
            )

    def release_abandoned(self, ids: Iterable[int], abandoned: Callable[[str, datetime], bool]) -> int:
        """Requeue running jobs among `ids` whose holder `abandoned(worker, updated_at)` says is gone."""
        with self.db.write() as session:
            rows = session.execute(
                select(JobRecord.id, JobRecord.worker, JobRecord.updated_at).where(
                    JobRecord.id.in_(list(ids)), JobRecord.status == JobStatus.RUNNING.value
                )
            ).all()
            gone = [(job_id, worker) for job_id, worker, seen in rows if worker and abandoned(worker, seen)]
            return sum(
                self._set(session, job_id, JobStatus.RUNNING, worker, _REQUEUE) for job_id, worker in gone
            )


def _get(session: Session, job_id: int) -> JobRecord:
    job = session.get(JobRecord, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


def _job(session: Session, job: JobRecord) -> Job:
    slug = None
    if job.character_id is not None:
        slug = session.scalar(select(CharacterRecord.slug).where(CharacterRecord.id == job.character_id))
    return _row(job, slug)


def _row(job: JobRecord, slug: str | None) -> Job:
    return Job(job.id, job.kind, job.status, slug, dict(job.params), job.progress, job.error, job.created_at,
               job.updated_at, job.key, job.worker, job.attempts, None if job.result is None else dict(job.result))
