"""The Ray backend: the same job rows, run by Ray actors (one model load per actor).

Each actor opens the workspace (the same asset folder and database, shared by every machine of the
cluster) and runs `charforge.jobs.run.work`: claims, renders and results go through exactly the code
of the local backend, so a crash, a lost node or Ctrl-C leaves the same recoverable state. Without
`address`, a local Ray instance is started in this process and stopped afterwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from charforge.errors import InvalidInput
from charforge.jobs.run import Summary, release_abandoned, where, work
from charforge.store.models import JobStatus

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5


class _Worker:
    """Holds one open workspace (and, after the first batch, the loaded model) for the actor's life."""

    def __init__(self, place: tuple[str, str], threads: int) -> None:
        import torch

        from charforge.forge import Forge

        torch.set_num_threads(threads)
        self.forge = Forge.open(place[0], db_url=place[1])

    def run(self, job_ids: Sequence[int], batch: int) -> Summary:
        return work(self.forge, job_ids, batch=batch)


def run_ray(
    forge: Any,
    job_ids: Sequence[int],
    *,
    batch: int,
    workers: int = 1,
    address: str | None = None,
    threads: int = 1,
    on_progress: Callable[[int], None] | None = None,
) -> Summary:
    """Run `job_ids` on `workers` Ray actors (a local Ray instance unless `address` names a cluster)."""
    try:
        import ray
    except ImportError:
        raise InvalidInput("--backend ray needs Ray: pip install 'charforge[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True)  # fmt: skip
    release_abandoned(forge, job_ids)
    actor_cls = ray.remote(num_cpus=threads)(_Worker)
    actors = [actor_cls.remote(where(forge), threads) for _ in range(workers)]
    queue = forge.repository.jobs
    total = Summary()
    start = time.perf_counter()
    try:
        pending = [actor.run.remote(list(job_ids), batch) for actor in actors]
        finished = []
        while pending:
            ready, pending = ray.wait(pending, timeout=POLL_SECONDS)
            finished += ready
            if on_progress:
                counts = queue.counts(job_ids)
                on_progress(counts[JobStatus.DONE.value] + counts[JobStatus.FAILED.value])
        for summary in ray.get(finished):
            total.rendered += summary.rendered
            total.reused += summary.reused
            total.failed += summary.failed
            total.errors += summary.errors
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
        release_abandoned(forge, job_ids)  # jobs of actors stopped mid-batch go back to the queue
    total.seconds = time.perf_counter() - start
    return total
