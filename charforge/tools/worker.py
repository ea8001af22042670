"""One background thread that owns the model: it runs queued render jobs one at a time.

Callers (HTTP handlers, MCP calls) only write a job row and hand its id to `submit`; they never touch
torch, so an event loop serving requests stays responsive while a render runs. Jobs live in the
workspace's jobs table and are claimed before they run (compare-and-set, like the batch runners), so
several servers on one workspace never run the same job; `start` requeues what a dead process held
(or left running) and picks up everything queued. The verbs are cached, so a rerun renders nothing twice.
"""

from __future__ import annotations

import logging
import queue
import threading

from charforge.errors import CharforgeError
from charforge.forge import Forge
from charforge.jobs.run import abandoned, worker_name
from charforge.tools.render import RUNNERS, run_job

log = logging.getLogger(__name__)

_STOP = -1


class Worker:
    def __init__(self, forge: Forge) -> None:
        self.forge = forge
        self.name = worker_name()
        self._queue: queue.Queue[int] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._lock = threading.Lock()
        self._unfinished = 0  # submitted and not yet finished

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
        self._thread = threading.Thread(target=self._run, name="charforge-worker", daemon=True)
        self._thread.start()
        return self

    def submit(self, job_id: int) -> None:
        with self._lock:
            self._unfinished += 1
            self._idle.clear()
        self._queue.put(job_id)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Finish the job in hand, then stop; queued jobs stay queued in the table for the next start."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the queue is empty and no job is running (tests, benchmarks, `serve --once`)."""
        return self._idle.wait(timeout)

    def pending(self) -> int:
        """Jobs submitted to this worker and not finished yet (the one running included)."""
        return self._unfinished

    def _run(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id == _STOP:
                return
            try:
                self._execute(job_id)
            except Exception:  # the worker must survive anything one job does
                log.exception("job %d could not be recorded", job_id)
            with self._lock:
                self._unfinished -= 1
                if self._unfinished == 0:
                    self._idle.set()

    def _execute(self, job_id: int) -> None:
        jobs = self.forge.repository.jobs
        claimed = jobs.claim([job_id], self.name, 1)
        if not claimed:
            return  # taken by another worker, finished or cancelled meanwhile
        [job] = claimed
        try:
            result = run_job(self.forge, job)
        except CharforgeError as exc:
            log.warning("%s job %d failed: %s", job.kind, job_id, exc)
            jobs.fail(job_id, self.name, str(exc))
        except Exception as exc:
            log.exception("%s job %d crashed", job.kind, job_id)
            jobs.fail(job_id, self.name, f"internal error: {type(exc).__name__}: {exc}")
        else:
            jobs.finish(job_id, self.name, result)
