"""Helpers of the batch tests (tests/batch). Light on purpose: spawned claimer processes import this
module, and it imports the store only, not the models, so three of them start in seconds."""

from __future__ import annotations

import pytest

from charforge.forge import Forge
from charforge.paths import sha256_bytes
from charforge.store.models import JobStatus


@pytest.fixture
def forge(any_forge):
    """Tests using it run on SQLite and on PostgreSQL."""
    return any_forge


@pytest.fixture
def mira(forge, tiny_model_dir):
    from helpers.characters import make_character  # imports the models: only where a test asks for mira

    return make_character(forge, tiny_model_dir)


def db_args(forge: Forge) -> list[str]:
    """The CLI options that open `forge`'s database."""
    return ["--db", forge.db.url.render_as_string(hide_password=False)]


def check_store(forge: Forge, job_ids) -> None:  # type: ignore[no-untyped-def]
    """Every done job points at a stored, intact asset; no asset is stored twice."""
    jobs = forge.repository.jobs.many(job_ids)
    assert all(j.status == JobStatus.DONE.value for j in jobs)
    for job in jobs:
        path = forge.workspace.resolve(job.result["path"])
        assert sha256_bytes(path.read_bytes()) == job.result["sha256"]
        assert job.result["state_hash"] == job.key
    keys = [(a.kind, a.state_hash) for c in forge.list() for a in c.store.assets()]
    assert len(keys) == len(set(keys))


def claim_all(workspace: str, db: str, ids: list[int], worker: str, out) -> None:  # type: ignore[no-untyped-def]
    """Claim jobs two at a time until none is left, finishing each; put the ids taken on `out`."""
    with Forge.open(workspace, db_url=db) as forge:
        queue = forge.repository.jobs
        mine = []
        while claimed := queue.claim(ids, worker, 2):
            mine += [j.id for j in claimed]
            for job in claimed:
                queue.finish(job.id, worker, {"by": worker})
        out.put(mine)
