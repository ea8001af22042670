"""The local backend: the planned jobs run in this process, or in N worker processes on this machine.

Each worker process opens the workspace itself and loads the model once; the parent only watches the
job rows for progress. On Ctrl-C the workers are stopped and the jobs they held go back to the queue.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from charforge.jobs.run import OnResult, Summary, release_abandoned, where, work
from charforge.store.models import JobStatus

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
OnProgress = Callable[[int], None]  # jobs settled so far


def _child(place: tuple[str, str], job_ids: Sequence[int], batch: int, threads: int, results: Any) -> None:
    import torch

    from charforge.forge import Forge

    torch.set_num_threads(threads)
    try:
        with Forge.open(place[0], db_url=place[1]) as forge:
            summary = work(forge, job_ids, batch=batch)
        results.put(("ok", summary))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def run_local(
    forge: Any,
    job_ids: Sequence[int],
    *,
    batch: int,
    workers: int = 1,
    on_result: OnResult | None = None,
    on_progress: OnProgress | None = None,
) -> Summary:
    """Run `job_ids` with `workers` workers (1: in this process) until every one is settled."""
    release_abandoned(forge, job_ids)
    if workers <= 1:
        return work(forge, job_ids, batch=batch, on_result=on_result)
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")  # torch and open database handles do not survive fork
    results = ctx.Queue()
    place = where(forge)
    procs = [ctx.Process(target=_child, args=(place, list(job_ids), batch, threads, results)) for _ in range(workers)]
    start = time.perf_counter()
    for proc in procs:
        proc.start()
    queue = forge.repository.jobs
    total = Summary()
    try:
        while any(p.is_alive() for p in procs):
            if on_progress:
                counts = queue.counts(job_ids)
                on_progress(counts[JobStatus.DONE.value] + counts[JobStatus.FAILED.value])
            time.sleep(POLL_SECONDS)
    except BaseException:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join()
        release_abandoned(forge, job_ids)
        raise
    for proc in procs:
        proc.join()
        status, payload = results.get(timeout=10) if not results.empty() else ("error", "worker exited early")
        if status == "ok":
            total.rendered += payload.rendered
            total.reused += payload.reused
            total.failed += payload.failed
            total.errors += payload.errors
        else:
            total.errors.append(payload)
    total.seconds = time.perf_counter() - start
    return total
