"""The tool dispatcher on a real workspace: answers, jobs, limits and errors an LLM can act on."""

from __future__ import annotations

import json

import pytest

from charforge.tools import Limits, Toolbox
from charforge.tools.worker import Worker


def ok(outcome):
    assert outcome["ok"], outcome
    return outcome["result"]


def fail(outcome, code):
    assert not outcome["ok"] and outcome["error"]["code"] == code, outcome
    return outcome["error"]["message"]


def test_set_emotion_queues_a_render_then_answers_from_the_cache(toolbox):
    first = ok(toolbox.call_tool("set_emotion", {"name": "mira", "emotions": {"joy": 0.8}, "reason": "a gift"}))
    assert not first["cached"] and first["asset"] is None and first["job"]["status"] == "queued"
    assert toolbox.worker.wait_idle(60)
    done = ok(toolbox.call_tool("job_status", {"id": first["job"]["id"]}))
    assert done["status"] == "done" and done["progress"] == 1.0
    asset = done["result"]["asset"]
    # the asset the job names is the file the Character API stores for that state
    mira = toolbox.forge.get("mira")
    [stored] = mira.store.assets("cg")
    assert asset["url"] == "/" + stored.relpath.as_posix() and asset["sha256"] == stored.sha256
    # an alias within the quantisation step is the same state: answered at once, no new job
    again = ok(toolbox.call_tool("set_emotion", {"name": "mira", "emotions": {"happy": 0.81}}))
    assert again["cached"] and again["job"] is None and again["asset"] == asset
    assert len(toolbox.forge.jobs()) == 1
    # both calls are in the history, marked as coming from an LLM tool
    assert [e.source for e in mira.store.history()] == ["llm-tool", "llm-tool"]


def test_render_does_not_change_the_current_state_and_the_same_job_is_not_queued_twice(cast):
    box = Toolbox(cast)  # no worker: jobs wait in the table
    a = ok(box.call_tool("render", {"name": "mira", "state": {"sadness": 0.6}}))
    b = ok(box.call_tool("render", {"name": "mira", "state": {"sad": 0.6}}))
    assert a["job"]["id"] == b["job"]["id"] and len(cast.jobs("queued")) == 1
    assert cast.get("mira").current_state().is_neutral and cast.get("mira").store.history() == []


def test_the_same_render_asked_by_eight_threads_at_once_is_one_job(cast):
    import threading

    box = Toolbox(cast, limits=Limits(renders_per_minute=2))  # no worker: jobs wait in the table
    gate = threading.Barrier(8)
    outcomes = []

    def ask() -> None:
        gate.wait()
        outcomes.append(box.call_tool("render", {"name": "mira", "state": {"fear": 0.7}}))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # one job for all eight, and it costs one render of the limit, not eight
    assert len({ok(o)["job"]["id"] for o in outcomes}) == 1 and len(outcomes) == 8
    assert len(cast.jobs("queued")) == 1
    ok(box.call_tool("render", {"name": "mira", "state": {"fear": 0.2}}))  # the second render of the minute


def test_renders_per_character_per_minute_are_limited_and_cache_hits_are_free(cast):
    now = [0.0]
    box = Toolbox(cast, limits=Limits(renders_per_minute=2), clock=lambda: now[0])
    for level in (0.3, 0.5):
        ok(box.call_tool("render", {"name": "mira", "state": {"anger": level}}))
    message = fail(box.call_tool("render", {"name": "mira", "state": {"anger": 0.9}}), "rate_limited")
    assert "retry in 60 s" in message
    outcome = box.call_tool("render", {"name": "mira", "state": {"anger": 0.9}})
    assert outcome["error"]["retry_after"] == 60.0
    # an already queued state is not a new render
    ok(box.call_tool("render", {"name": "mira", "state": {"anger": 0.3}}))
    now[0] = 61.0
    ok(box.call_tool("render", {"name": "mira", "state": {"anger": 0.9}}))


def test_queue_is_bounded(cast):
    box = Toolbox(cast, limits=Limits(max_queued=2, renders_per_minute=100))
    ok(box.call_tool("render", {"name": "mira", "state": {"fear": 0.3}}))
    ok(box.call_tool("render", {"name": "mira", "state": {"fear": 0.6}}))
    fail(box.call_tool("render", {"name": "mira", "state": {"fear": 0.9}}), "queue_full")


@pytest.mark.parametrize(
    ("name", "arguments", "code", "says"),
    [
        ("paint", {}, "unknown_tool", "set_emotion"),
        ("set_emotion", {"name": "mira", "emotions": {"jyo": 0.5}}, "invalid_input", "did you mean 'joy'"),
        ("set_emotion", {"name": "mira", "emotions": {"joy": 1.5}}, "invalid_arguments", "emotions.joy"),
        ("set_emotion", {"name": "mira", "emotions": {"joy": 0.5}, "mood": "x"}, "invalid_arguments", "mood"),
        ("get_character", {"name": "../../etc/passwd"}, "invalid_arguments", "name"),
        ("get_character", {"name": "nobody"}, "not_found", "nobody"),
        ("bgm", {"name": "mira", "seconds": 1e9}, "invalid_arguments", "seconds"),
        ("edit", {"name": "mira", "from_text": "blue outfit", "to_text": "red outfit"}, "invalid_input", "prompt"),
        ("job_status", {"id": 12345}, "not_found", "12345"),
        ("job_status", "{not json", "invalid_arguments", "JSON"),
        ("job_status", [1], "invalid_arguments", "object"),
        ("set_emotion", {"name": "mira", "emotions": {"joy": 0.1}, "reason": "x" * 20_000}, "arguments_too_large", "limit"),
    ],
)
def test_errors_name_the_problem(cast, name, arguments, code, says):
    message = fail(Toolbox(cast).call_tool(name, arguments), code)
    assert says in message and len(message) <= 500


def test_tighter_deployment_limits_apply_beyond_the_schema(cast):
    box = Toolbox(cast, limits=Limits(max_seconds=5.0, max_steps=4))
    assert "(0, 5]" in fail(box.call_tool("bgm", {"name": "mira", "seconds": 8}), "limit_exceeded")
    assert "[1, 4]" in fail(box.call_tool("bgm", {"name": "mira", "seconds": 2, "steps": 9}), "limit_exceeded")


def test_json_text_arguments_are_accepted(cast):
    result = ok(Toolbox(cast).call_tool("get_character", json.dumps({"name": "mira", "history": 0})))
    assert result["name"] == "mira" and result["has_identity"] and result["history"] == []


def test_edit_queues_an_inpaint_of_the_named_region(toolbox):
    result = ok(toolbox.call_tool("edit", {"name": "mira", "from_text": "green outfit", "to_text": "red outfit", "steps": 2}))
    assert result["job"]["kind"] == "inpaint" and result["job"]["status"] == "queued"
    assert toolbox.worker.wait_idle(120)
    done = ok(toolbox.call_tool("job_status", {"id": result["job"]["id"]}))
    assert done["status"] == "done", done
    [asset] = [a for a in toolbox.forge.get("mira").store.assets("cg") if a.params.get("mode") == "inpaint"]
    assert done["result"]["asset"]["sha256"] == asset.sha256 and asset.params["region"] == "outfit"


def test_a_failing_job_is_marked_failed_with_its_reason(cast):
    job = cast.create_job("feel", {"state": {"joy": 2.0}}, character="mira")  # written by a buggy client
    worker = Worker(cast).start()
    assert worker.wait_idle(30)
    worker.stop()
    failed = cast.get_job(job.id)
    assert failed.status == "failed" and "joy" in failed.error and failed.result is None


def test_a_job_keeps_its_result_as_plain_json(cast):
    from charforge.errors import InvalidInput
    from charforge.forge import Forge

    job = cast.create_job("feel", {"state": {"joy": 0.5}}, character="mira")
    with pytest.raises(InvalidInput):
        cast.update_job(job.id, result={"asset": {"size": float("nan")}})
    cast.update_job(job.id, status="done", result={"asset": {"url": "/assets/cg/ab/x.png"}})
    with Forge.open(cast.workspace.root) as other:  # another process reads it back
        assert other.get_job(job.id).result == {"asset": {"url": "/assets/cg/ab/x.png"}}
        assert other.get_job(job.id).to_dict()["result"] == {"asset": {"url": "/assets/cg/ab/x.png"}}


def test_two_workers_on_one_workspace_run_a_job_once(cast, monkeypatch):
    from charforge.tools import render

    calls = []
    feel = render.RUNNERS["feel"]
    monkeypatch.setitem(render.RUNNERS, "feel", lambda character, params: calls.append(1) or feel(character, params))
    job = cast.create_job("feel", {"state": {"trust": 0.6}}, character="mira")
    first, second = Worker(cast), Worker(cast)
    first.submit(job.id)
    second.submit(job.id)
    first.start(resume=False), second.start(resume=False)
    assert first.wait_idle(60) and second.wait_idle(60)
    first.stop(), second.stop()
    done = cast.get_job(job.id)
    assert done.status == "done" and done.worker in (first.name, second.name) and len(calls) == 1


def test_a_job_held_by_a_dead_process_is_taken_back_on_start(cast):
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job = cast.create_job("feel", {"state": {"fear": 0.4}}, character="mira")
    [held] = cast.repository.jobs.claim([job.id], f"{socket.gethostname()}:{dead.pid}:gone", 1)
    assert held.status == "running"
    worker = Worker(cast).start()
    assert worker.wait_idle(60)
    worker.stop()
    assert cast.get_job(job.id).status == "done"
