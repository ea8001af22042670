"""`charforge regenerate` on the tiny model: one job per asset, atomic claims, skip what is stored, and
a run killed with SIGKILL that a second run completes without redrawing anything already finished."""

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
from helpers.characters import forbid_model, make_character

from charforge.emotion.labels import SILLYTAVERN, label_set, label_state
from charforge.errors import InvalidInput
from charforge.forge import Forge
from charforge.jobs import Request, plan, regenerate
from charforge.paths import sha256_bytes
from charforge.store.models import JobStatus

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def forge(any_forge):
    """Every test here runs on SQLite and on PostgreSQL."""
    return any_forge


@pytest.fixture
def mira(forge, tiny_model_dir):
    return make_character(forge, tiny_model_dir)


def _db_args(forge: Forge) -> list[str]:
    """The CLI options that open `forge`'s database."""
    return ["--db", forge.db.url.render_as_string(hide_password=False)]


def _check_store(forge: Forge, job_ids) -> None:
    """Every done job points at a stored, intact asset; no asset is stored twice."""
    jobs = forge.repository.jobs.many(job_ids)
    assert all(j.status == JobStatus.DONE.value for j in jobs)
    for job in jobs:
        path = forge.workspace.resolve(job.result["path"])
        assert sha256_bytes(path.read_bytes()) == job.result["sha256"]
        assert job.result["state_hash"] == job.key
    keys = [(a.kind, a.state_hash) for c in forge.list() for a in c.store.assets()]
    assert len(keys) == len(set(keys))


def test_plan_records_one_job_per_asset_and_labels_sharing_a_state_share_one(forge, mira):
    # happy is an alias of joy, and neutral is the same state at any intensity: one asset each
    labels = ("joy", "happy", "sadness", "neutral")
    planned = plan(forge, Request(("mira",), labels, (0.5, 1.0)))
    assert [(i.label, i.intensity) for i in planned.items] == [
        ("joy", 0.5), ("sadness", 0.5), ("neutral", 0.5), ("joy", 1.0), ("sadness", 1.0)]
    assert len(set(planned.jobs)) == 5
    again = plan(forge, Request(("mira",), labels, (0.5, 1.0)))
    assert again.jobs == planned.jobs  # re-planning reuses the rows
    assert len(forge.jobs()) == 5
    dry = plan(forge, Request(("mira",), ("anger",), (1.0,)), dry_run=True)
    assert len(dry.items) == 1 and dry.items[0].job is None and len(forge.jobs()) == 5


@pytest.mark.slow
def test_regenerate_renders_each_asset_once_and_a_rerun_renders_nothing(forge, mira, monkeypatch):
    request = Request(("mira",), ("joy", "sadness", "anger", "neutral"), (0.5, 1.0))
    first = regenerate(forge, request, batch=3)
    assert first.summary.rendered == 7 and first.summary.failed == 0  # neutral at any intensity is the base CG
    assert len(mira.store.assets("cg")) == 7
    _check_store(forge, first.plan.jobs)
    for item in first.plan.items:  # the stored picture is the one `feel` serves for that label
        assert mira.feel(label_state(item.label, item.intensity), record=False).key == item.key

    forbid_model(monkeypatch)
    second = regenerate(forge, request, batch=3)
    assert second.summary.rendered == 0 and all(i.cached for i in second.plan.items) and not second.plan.todo


@pytest.mark.slow
def test_a_failing_batch_marks_its_jobs_failed_and_a_rerun_retries_them(forge, mira, monkeypatch):
    import charforge.character.feel as feel_module

    real = feel_module.render_edits

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(feel_module, "render_edits", broken)
    request = Request(("mira",), ("joy", "fear"), (1.0,))
    failed = regenerate(forge, request)
    assert failed.summary.failed == 2 and "out of memory" in failed.summary.errors[0]
    assert {j.status for j in forge.repository.jobs.many(failed.plan.jobs)} == {"failed"}
    monkeypatch.setattr(feel_module, "render_edits", real)
    retried = regenerate(forge, request)
    assert retried.plan.jobs == failed.plan.jobs and retried.summary.rendered == 2
    _check_store(forge, retried.plan.jobs)


def _claimer(workspace: str, db: str, ids: list[int], worker: str, out) -> None:  # type: ignore[no-untyped-def]
    with Forge.open(workspace, db_url=db) as forge:
        queue = forge.repository.jobs
        mine = []
        while claimed := queue.claim(ids, worker, 2):
            mine += [j.id for j in claimed]
            for job in claimed:
                queue.finish(job.id, worker, {"by": worker})
        out.put(mine)


@pytest.mark.slow  # three processes importing charforge
def test_claims_are_atomic_across_processes(forge):
    forge.create("nell", prompt="portrait of a boy", build_identity=False)
    queue = forge.repository.jobs
    ids = [queue.plan_job("render-cg", "nell", f"{i:064x}", {"i": i}) for i in range(60)]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(str(forge.workspace.root), _db_args(forge)[1], ids, f"w{n}", out)) for n in range(3)]
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


def _regenerate_cmd(forge: Forge, *extra: str) -> list[str]:
    workspace = forge.workspace.root
    return [sys.executable, "-c", "from charforge.cli.main import main; main()", "regenerate", "mira", "--set", "sillytavern",
            "--intensities", "0.5,1.0", "--workspace", str(workspace), *_db_args(forge), "--json", *extra]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow  # two CLI processes (imports, model load) and ~50 renders on the tiny model
def test_sigkilled_regenerate_is_completed_by_a_rerun_without_redrawing(forge, mira):
    total = len(plan(forge, Request(("mira",), SILLYTAVERN, (0.5, 1.0)), dry_run=True).items)
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
    _check_store(forge, [j.id for j in jobs])


@pytest.mark.slow  # a CLI process (imports, model load) interrupted mid-run
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


def test_regenerate_cli_dry_run_and_bad_input(forge, mira, cli):
    ws = ["--workspace", forge.workspace.root, *_db_args(forge)]
    code, out, err = cli("regenerate", "mira", "--emotions", "joy,anger", "--dry-run", "--json", *ws)
    assert code == 0, err
    data = json.loads(out)
    assert data["assets"] == 2 and data["to_render"] == 2 and forge.jobs() == []
    code, out, err = cli("regenerate", "mira", "--emotions", "joy", "--intensities", "0.5", *ws)
    assert code == 0, err
    assert "mira" in out and len(mira.store.assets("cg")) == 1
    for args, needle in [
        (("mira", "--all"), "either"),
        (("mira", "--emotions", "joy", "--set", "plutchik"), "not both"),
        (("mira", "--intensities", "1.5"), "intensities"),
        (("mira", "--intensities", "a,b"), "intensities"),
        (("mira", "--set", "klingon"), "klingon"),
        (("mira", "--backend", "slurm"), "slurm"),
        (("Mira!",), "invalid character name"),
    ]:
        code, _, err = cli("regenerate", *args, *ws)
        assert code == 2 and needle in err and err.count("\n") == 1, (args, err)


def test_label_sets():
    assert len(SILLYTAVERN) == 28 and label_set("plutchik")[-1] == "neutral"
    with pytest.raises(InvalidInput, match="unknown label set"):
        label_set("emoji")


@pytest.mark.slow
def test_regenerate_with_bgm_makes_one_loop_per_mood_plan(forge, mira, tiny_bgm_model_dir):
    mira.update(settings={**mira.settings, "music": {"model": str(tiny_bgm_model_dir)}})
    request = Request(("mira",), ("joy", "sadness"), (1.0,), bgm=True, bgm_options={"seconds": 6.0, "steps": 2})
    result = regenerate(forge, request)
    kinds = sorted(i.kind for i in result.plan.items)
    assert kinds == ["bgm", "bgm", "cg", "cg"] and result.summary.failed == 0
    music = mira.store.assets("bgm")
    assert len(music) == 2 and all(a.params["loop"] for a in music)
    _check_store(forge, result.plan.jobs)
    assert regenerate(forge, request).summary.rendered == 0


@pytest.mark.slow  # two worker processes, each loading the model
def test_two_worker_processes_share_the_jobs(forge, mira):
    request = Request(("mira",), ("joy", "sadness", "anger", "fear", "surprise", "disgust"), (0.5, 1.0))
    result = regenerate(forge, request, workers=2, batch=2)
    assert result.summary.failed == 0 and result.summary.rendered == 12
    jobs = forge.repository.jobs.many(result.plan.jobs)
    assert all(j.attempts == 1 for j in jobs)  # no job was claimed twice
    assert 1 <= len({j.worker for j in jobs}) <= 2  # (one may finish before the other has loaded)
    assert len(mira.store.assets("cg")) == 12
    _check_store(forge, result.plan.jobs)
