"""Running planned jobs: claim a batch, render it through the character's own verbs, record the result.

Any number of workers (threads of one process excepted), in this process, in child processes or as
Ray actors, run `work` against the same job rows; claims are compare-and-set in the store, so no job
is run by two of them. The order within one job is what makes a crash harmless: the asset file is
written atomically, then its row, then the job is marked done with a pointer to it. A worker killed
at any point leaves at most a running job that points at nothing; the next run releases it (its
process is gone) and finds the asset if it was already stored.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from charforge.emotion import EmotionState
from charforge.errors import CharforgeError
from charforge.jobs.plan import BGM_JOB, CG_JOB
from charforge.store.models import JobStatus
from charforge.store.records import Job

log = logging.getLogger(__name__)

LEASE_SECONDS = 3600.0  # a job held this long by a worker on another machine is taken as abandoned
OnResult = Callable[[Job, dict[str, Any] | None, str | None], None]


def worker_name() -> str:
    """host:pid:nonce — the host and pid let a later run on this machine see that the holder is gone."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def abandoned(worker: str, seen: datetime, *, lease: float = LEASE_SECONDS) -> bool:
    """Whether the holder of a running job is gone: a dead process on this host, else an expired lease."""
    host, _, rest = worker.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        return int(pid) != os.getpid() and not _pid_alive(int(pid))
    return (datetime.now(UTC) - seen).total_seconds() > lease


def where(forge: Any) -> tuple[str, str]:
    """(workspace folder, database URL) for another process or machine to open the same workspace."""
    return str(forge.workspace.root), forge.db.url.render_as_string(hide_password=False)


def _asset_result(asset: Any, rendered: bool) -> dict[str, Any]:
    return {"path": asset.relpath.as_posix(), "sha256": asset.sha256, "state_hash": asset.state_hash,
            "rendered": rendered}  # fmt: skip


def execute(forge: Any, jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """Render one claimed batch (one kind, one character); one result per job, in order."""
    from charforge.character.feel import feel_many

    character = forge.get(jobs[0].character)
    states = [EmotionState(**job.params["state"]) for job in jobs]
    if jobs[0].kind == CG_JOB:
        results = feel_many(character, states, batch=len(states))
        return [_asset_result(r.asset, not r.cached) for r in results]
    if jobs[0].kind == BGM_JOB:
        out = []
        for job, state in zip(jobs, states):
            options = {k: job.params[k] for k in ("seconds", "loop", "steps", "guidance", "seed") if k in job.params}
            music = character.bgm(state, **options)
            out.append(_asset_result(music.asset, not music.cached))
        return out
    raise CharforgeError(f"unknown job kind {jobs[0].kind!r}")


@dataclass
class Summary:
    """What one worker did (rendered: assets it drew; reused: jobs whose asset was already stored)."""

    rendered: int = 0
    reused: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


def work(
    forge: Any,
    job_ids: Sequence[int],
    *,
    batch: int,
    worker: str | None = None,
    on_result: OnResult | None = None,
) -> Summary:
    """Claim and run jobs among `job_ids` until none is left; an interrupt gives the held ones back."""
    worker = worker or worker_name()
    queue = forge.repository.jobs
    summary = Summary()
    start = time.perf_counter()
    while claimed := queue.claim(job_ids, worker, batch):
        try:
            results = execute(forge, claimed)
        except Exception as exc:  # noqa: BLE001 - recorded on the jobs; the other batches go on
            message = f"{type(exc).__name__}: {exc}"
            log.warning("batch of %d %s jobs of %s failed: %s", len(claimed), claimed[0].kind, claimed[0].character,
                        message)  # fmt: skip
            for job in claimed:
                queue.fail(job.id, worker, message)
                if on_result:
                    on_result(job, None, message)
            summary.failed += len(claimed)
            summary.errors.append(message)
            continue
        except BaseException:
            queue.release([job.id for job in claimed], worker)
            raise
        for job, result in zip(claimed, results):
            if not queue.finish(job.id, worker, result):
                log.info("job %d was settled by another worker meanwhile", job.id)
            summary.rendered += result["rendered"]
            summary.reused += not result["rendered"]
            if on_result:
                on_result(job, result, None)
    summary.seconds = time.perf_counter() - start
    return summary


def release_abandoned(forge: Any, job_ids: Sequence[int]) -> int:
    """Requeue jobs among `job_ids` held by workers that are gone (a killed earlier run)."""
    released = forge.repository.jobs.release_abandoned(job_ids, abandoned)
    if released:
        log.info("released %d jobs left running by a stopped worker", released)
    return released


def outcome(forge: Any, job_ids: Sequence[int]) -> dict[str, dict[str, int]]:
    """Per character: jobs done (rendered / reused), failed and still open, read from the job rows."""
    table: dict[str, dict[str, int]] = {}
    for job in forge.repository.jobs.many(job_ids):
        row = table.setdefault(job.character or "?", {"rendered": 0, "reused": 0, "failed": 0, "open": 0})
        if job.status == JobStatus.DONE.value:
            row["rendered" if (job.result or {}).get("rendered") else "reused"] += 1
        elif job.status == JobStatus.FAILED.value:
            row["failed"] += 1
        else:
            row["open"] += 1
    return table
