"""One background thread that owns the model: it runs queued render jobs, a batch at a time.

Callers (HTTP handlers, MCP calls) only write a job row and hand its id to `submit`; they never touch
torch, so an event loop serving requests stays responsive while a render runs. Jobs live in the
workspace's jobs table and are claimed before they run (compare-and-set, like the batch runners), so
several servers on one workspace never run the same job; `start` requeues what a dead process held
(or left running) and picks up everything queued. The verbs are cached, so a rerun renders nothing twice.

Whatever is waiting when the worker turns to its queue is claimed together when it can be drawn
together: the `feel` jobs of one character (up to `batch`) go through one `feel_many` call, about
half the CPU per picture of one call each. A chat front end that sends a few states while a render
runs gets them all sooner; a lone request is not kept waiting for company.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from charforge.errors import CharforgeError
from charforge.forge import Forge, Job
from charforge.jobs.run import abandoned, worker_name
from charforge.tools.render import BATCHED, RUNNERS, run_batch, run_job

log = logging.getLogger(__name__)

BATCH = 8  # as `charforge.character.feel.RENDER_BATCH` (not imported: it would import torch)


class Worker:
    def __init__(self, forge: Forge, *, batch: int = BATCH) -> None:
        self.forge = forge
        self.name = worker_name()
        self.batch = max(1, batch)
        self._pending: deque[int] = deque()  # submitted and not settled yet, oldest first
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()

    def start(self, *, resume: bool = True) -> Worker:
        """Start the thread; with `resume`, first queue the unfinished jobs of kinds this worker runs."""
        if self._thread is not None:
            return self
        if resume:
            jobs = self.forge.repository.jobs
            running = [j for j in self.forge.jobs("running") if j.kind in RUNNERS]
            for job in running:
                if job.worker is None:  # left running by a process that did not claim it
                    self.forge.update_job(job.id, status="queued")
            jobs.release_abandoned([j.id for j in running if j.worker], abandoned)
            for job in self.forge.jobs("queued"):
                if job.kind in RUNNERS:
                    log.info("resuming %s job %d of %s", job.kind, job.id, job.character)
                    self.submit(job.id)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="charforge-worker", daemon=True)
        self._thread.start()
        return self

    def submit(self, job_id: int) -> None:
        with self._wake:
            self._pending.append(job_id)
            self._idle.clear()
            self._wake.notify()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Finish the batch in hand, then stop; queued jobs stay queued in the table for the next start."""
        if self._thread is None:
            return
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout)
        self._thread = None

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the queue is empty and no job is running (tests, benchmarks, `serve --once`)."""
        return self._idle.wait(timeout)

    def pending(self) -> int:
        """Jobs submitted to this worker and not finished yet (the ones running included)."""
        return len(self._pending)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                ids = list(self._pending)
            try:
                settled = self._execute(ids)
            except Exception:  # the worker must survive anything one job does
                log.exception("jobs %s could not be claimed or recorded", ids)
                settled = ids
            with self._wake:
                for job_id in settled:
                    self._pending.remove(job_id)
                if not self._pending:
                    self._idle.set()

    def _execute(self, ids: list[int]) -> list[int]:
        """Claim and run the next batch among `ids`; returns the ids it settled (run, or no longer queued)."""
        alone = [kind for kind in RUNNERS if kind not in BATCHED]
        claimed = self.forge.repository.jobs.claim(ids, self.name, self.batch, alone=alone)
        if not claimed:
            return ids  # none of them is queued any more: finished, cancelled or taken by another worker
        if len(claimed) > 1 and self._run_together(claimed):
            return [job.id for job in claimed]
        for job in claimed:  # a lone job, or a batch that failed: then each alone, so one bad job fails alone
            self._run_one(job)
        return [job.id for job in claimed]

    def _run_together(self, claimed: list[Job]) -> bool:
        jobs = self.forge.repository.jobs
        try:
            results = run_batch(self.forge, claimed)
        except Exception as exc:  # noqa: BLE001 - the jobs are run one by one next, each with its own outcome
            log.warning("a batch of %d %s jobs failed (%s); running them one at a time", len(claimed),
                        claimed[0].kind, exc)  # fmt: skip
            return False
        for job, result in zip(claimed, results):
            jobs.finish(job.id, self.name, result)
        return True

    def _run_one(self, job: Job) -> None:
        jobs = self.forge.repository.jobs
        try:
            result = run_job(self.forge, job)
        except CharforgeError as exc:
            log.warning("%s job %d failed: %s", job.kind, job.id, exc)
            jobs.fail(job.id, self.name, str(exc))
        except Exception as exc:
            log.exception("%s job %d crashed", job.kind, job.id)
            jobs.fail(job.id, self.name, f"internal error: {type(exc).__name__}: {exc}")
        else:
            jobs.finish(job.id, self.name, result)
