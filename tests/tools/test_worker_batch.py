"""The service's worker draws the `feel` jobs waiting for one character together (one `feel_many` call), and
each job still ends with its own state's picture; a bad job in a batch fails alone."""

from __future__ import annotations

import pytest

from charforge.tools import Toolbox
from charforge.tools import worker as worker_module
from charforge.tools.worker import Worker

STATES = [{"joy": 0.6}, {"sadness": 0.6}, {"anger": 0.6}]


@pytest.fixture
def batches(monkeypatch):
    """The sizes of the batches the worker hands to `run_batch`."""
    sizes: list[int] = []
    real = worker_module.run_batch
    monkeypatch.setattr(worker_module, "run_batch", lambda forge, jobs: sizes.append(len(jobs)) or real(forge, jobs))
    return sizes


def run_queued(cast) -> None:
    worker = Worker(cast).start()  # resumes everything queued: all of it is waiting at its first claim
    assert worker.wait_idle(300)
    worker.stop()


def test_waiting_feel_jobs_are_drawn_together_each_with_its_own_picture(cast, batches):
    jobs = [cast.create_job("feel", {"state": s}, character="mira") for s in STATES]
    run_queued(cast)
    assert batches == [len(STATES)]
    box = Toolbox(cast)
    shas = set()
    for job, state in zip(jobs, STATES):
        done = cast.get_job(job.id)
        answer = box.call_tool("render", {"name": "mira", "state": state})
        assert done.status == "done" and answer["ok"] and answer["result"]["cached"]
        assert done.result["asset"] == answer["result"]["asset"]  # what a later request for the state gets
        shas.add(done.result["asset"]["sha256"])
    assert len(shas) == len(STATES)


def test_a_bad_job_in_a_batch_fails_alone(cast, batches):
    good = [cast.create_job("feel", {"state": s}, character="mira") for s in STATES[:2]]
    bad = cast.create_job("feel", {"state": {"joy": 2.0}}, character="mira")  # written by a buggy client
    run_queued(cast)
    assert batches == [3]  # tried together, then one by one
    assert [cast.get_job(j.id).status for j in good] == ["done", "done"]
    failed = cast.get_job(bad.id)
    assert failed.status == "failed" and "joy" in failed.error


def test_work_that_runs_one_job_at_a_time_is_claimed_one_at_a_time(cast):
    bgm = [cast.create_job("bgm", {"state": {"joy": 0.5}, "seconds": s}, character="mira") for s in (2.0, 3.0)]
    feel = [cast.create_job("feel", {"state": s}, character="mira") for s in STATES]
    ids = [j.id for j in bgm + feel]
    jobs = cast.repository.jobs
    assert [j.id for j in jobs.claim(ids, "w", 8, alone=["bgm"])] == [bgm[0].id]
    assert [j.id for j in jobs.claim(ids, "w", 8, alone=["bgm"])] == [bgm[1].id]
    assert [j.id for j in jobs.claim(ids, "w", 8, alone=["bgm"])] == [j.id for j in feel]
    assert jobs.claim(ids, "w", 8, alone=["bgm"]) == []
