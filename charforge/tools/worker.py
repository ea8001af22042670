"""One background thread that owns the model: it runs queued render jobs one at a time.

Callers (HTTP handlers, MCP calls) only write a job row and hand its id to `submit`; they never touch
torch, so an event loop serving requests stays responsive while a render runs. Jobs live in the
workspace's jobs table, so `start` picks up what a previous process left queued (or was running when
it died) and runs it again: the verbs are cached, so nothing is rendered twice.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from charforge.errors import CharforgeError
from charforge.forge import Forge, Job
from charforge.tools.render import RUNNERS, UNFINISHED, run_job

log = logging.getLogger(__name__)

_STOP = -1


class Worker:
    def __init__(self, forge: Forge, *, on_update: Callable[[Job], None] | None = None) -> None:
        self.forge = forge
        self.on_update = on_update
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
            pending = [j for status in UNFINISHED for j in self.forge.jobs(status) if j.kind in RUNNERS]
            for job in sorted(pending, key=lambda j: j.id):
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

    def _update(self, job_id: int, **changes: object) -> None:
        job = self.forge.update_job(job_id, **changes)  # type: ignore[arg-type]
        if self.on_update is not None:
            self.on_update(job)

    def _execute(self, job_id: int) -> None:
        job = self.forge.get_job(job_id)
        if job.status not in UNFINISHED:
            return  # done by another worker, or cancelled, meanwhile
        self._update(job_id, status="running", progress=0.05)
        try:
            result = run_job(self.forge, job)
        except CharforgeError as exc:
            log.warning("%s job %d failed: %s", job.kind, job_id, exc)
            self._update(job_id, status="failed", progress=1.0, error=str(exc))
        except Exception as exc:
            log.exception("%s job %d crashed", job.kind, job_id)
            self._update(job_id, status="failed", progress=1.0, error=f"internal error: {type(exc).__name__}: {exc}")
        else:
            self._update(job_id, status="done", progress=1.0, result=result)
