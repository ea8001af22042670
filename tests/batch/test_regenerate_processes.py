"""`charforge regenerate` across processes: atomic claims by three processes, a run killed with SIGKILL
that a second run completes without redrawing what was finished, Ctrl-C giving held jobs back, and two
worker processes sharing one plan. (A module of its own so that pytest-xdist can run it beside the
in-process tests of test_regenerate.py.)"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import batch
from helpers.batch import check_store, claim_all, db_args

from charforge.forge import Forge
from charforge.jobs import Request, plan, regenerate
from charforge.paths import sha256_bytes

forge, mira = batch.forge, batch.mira  # the batch modules' fixtures (SQLite and PostgreSQL)
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # three processes importing charforge
def test_claims_are_atomic_across_processes(forge):
    forge.create("nell", prompt="portrait of a boy", build_identity=False)
    queue = forge.repository.jobs
    ids = [queue.plan_job("render-cg", "nell", f"{i:064x}", {"i": i}) for i in range(60)]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=claim_all, args=(str(forge.workspace.root), db_args(forge)[1], ids, f"w{n}", out))
        for n in range(3)
    ]
    for proc in procs:
        proc.start()
    taken = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join()
    flat = [job_id for mine in taken for job_id in mine]
    assert sorted(flat) == sorted(ids)  # every job claimed, none twice
    jobs = queue.many(ids)
    assert all(j.status == "done" and j.attempts == 1 for j in jobs)
    # a worker cannot settle a job it does not hold
    assert not queue.finish(ids[0], "intruder", {"by": "intruder"})
    assert queue.many(ids[:1])[0].result != {"by": "intruder"}


# what the interrupted runs draw: enough assets to stop mid-run, few enough that the rerun is short
KILLED_RUN = Request(("mira",), ("joy", "sadness", "anger", "fear", "surprise", "disgust"), (0.5, 1.0))


def _regenerate_cmd(forge: Forge, *extra: str) -> list[str]:
    workspace = forge.workspace.root
    return [sys.executable, "-c", "from charforge.cli.main import main; main()", "regenerate", "mira",
            "--emotions", ",".join(KILLED_RUN.labels), "--intensities", ",".join(map(str, KILLED_RUN.intensities)),
            "--workspace", str(workspace), *db_args(forge), "--json", *extra]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow  # two CLI processes (imports, model load) and a dozen renders on the tiny model
# a killed connection is each database's own recovery (journal rollback, server-side abort); what the
# rerun repairs (held jobs, half-written files) is charforge's, the same on both: the default backend
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sigkilled_regenerate_is_completed_by_a_rerun_without_redrawing(forge, mira):
    total = len(plan(forge, KILLED_RUN, dry_run=True).items)
    proc = subprocess.Popen(_regenerate_cmd(forge, "--batch", "1"), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    queue = forge.repository.jobs
    deadline = time.monotonic() + 240
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        jobs = queue.many(range(1, 10_000))
        done = sum(j.status == "done" and (j.result or {}).get("rendered") for j in jobs)
        if done >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()[1].decode()[-500:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    jobs = queue.many(range(1, 10_000))
    assert 3 <= done < total and len(jobs) == total
    assert any(j.status != "done" for j in jobs)
    before = {a.state_hash for a in mira.store.assets("cg")}
    for job in jobs:  # nothing points at a missing or half-written file, even right after the kill
        if job.result is not None:
            assert sha256_bytes(forge.workspace.resolve(job.result["path"]).read_bytes()) == job.result["sha256"]

    rerun = subprocess.run(_regenerate_cmd(forge), env=_env(), capture_output=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    summary = json.loads(rerun.stdout)
    after = mira.store.assets("cg")
    assert len(after) == total and len({a.state_hash for a in after}) == total
    assert summary["assets"] == total and summary["failed"] == 0
    assert summary["rendered"] == total - len(before)  # finished assets were not drawn again
    new = {a.state_hash for a in after} - before
    assert len(new) == summary["rendered"]
    check_store(forge, [j.id for j in jobs])


@pytest.mark.slow  # a CLI process (imports, model load) interrupted mid-run
# the queue's backend-specific part, claiming, is tested on both above; giving jobs back on Ctrl-C is
# the run's own code, so one backend (the default one) proves it
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_ctrl_c_gives_the_held_jobs_back(forge, mira):
    # as in a terminal: SIGINT not ignored, even when the tests themselves run in the background
    proc = subprocess.Popen(_regenerate_cmd(forge, "--batch", "1"), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    queue = forge.repository.jobs
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if sum(j.status == "done" for j in queue.many(range(1, 10_000))) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in (2, 130), (out.decode()[-1000:], err.decode()[-3000:])  # 130: the shell's "by SIGINT"
    assert "Traceback" not in err.decode()
    jobs = queue.many(range(1, 10_000))
    assert jobs and not [j for j in jobs if j.status == "running"]  # nothing left held by the stopped run
    assert {j.status for j in jobs} <= {"done", "queued"} and any(j.status == "queued" for j in jobs)


@pytest.mark.slow  # two worker processes, each loading the model
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # a server: where several workers meet
def test_two_worker_processes_share_the_jobs(forge, mira):
    request = Request(("mira",), ("joy", "sadness", "anger", "fear", "surprise", "disgust"), (0.5, 1.0))
    result = regenerate(forge, request, workers=2, batch=2)
    assert result.summary.failed == 0 and result.summary.rendered == 12
    jobs = forge.repository.jobs.many(result.plan.jobs)
    assert all(j.attempts == 1 for j in jobs)  # no job was claimed twice
    assert 1 <= len({j.worker for j in jobs}) <= 2  # (one may finish before the other has loaded)
    assert len(mira.store.assets("cg")) == 12
    check_store(forge, result.plan.jobs)
