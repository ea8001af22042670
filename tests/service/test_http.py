"""The HTTP service on a real uvicorn (a `charforge serve` process) on a loopback port."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests

from charforge.forge import Forge
from service.svc_server import serve

KEY = "sesame-open-1234"


@pytest.mark.slow  # starts a `charforge serve` process
def test_emotion_job_from_queued_to_done_then_cached_with_etag(server):
    listed = server.get("/characters").json()
    assert [c["name"] for c in listed["characters"]] == ["mira"]

    queued = server.post("/characters/mira/emotion", {"emotions": {"joy": 0.8}, "reason": "won the game"})
    assert queued.status_code == 202, queued.text
    job = queued.json()["job"]
    assert job["status"] == "queued" and queued.headers["Location"] == f"/jobs/{job['id']}"

    # progress as server-sent events, ending with the finished job
    with requests.get(f"{server.url}/jobs/{job['id']}/events", stream=True, timeout=120) as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        data = [json.loads(line[5:]) for line in events.iter_lines(decode_unicode=True) if line.startswith("data:")]
    assert data[-1]["status"] == "done" and data[-1]["progress"] == 1.0
    asset = data[-1]["result"]["asset"]
    assert server.get(f"/jobs/{job['id']}").json()["result"]["asset"] == asset

    cached = server.post("/characters/mira/emotion", {"emotions": {"happy": 0.8}})
    assert cached.status_code == 200 and cached.json()["cached"] and cached.json()["asset"] == asset

    picture = server.get(asset["url"])
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    assert picture.content[:8] == b"\x89PNG\r\n\x1a\n" and len(picture.content) == asset["size"]
    etag = picture.headers["etag"]
    assert etag == f'"{asset["sha256"]}"'
    again = server.get(asset["url"], headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert server.get(asset["url"], headers={"If-None-Match": '"other"'}).status_code == 200

    history = server.get("/characters/mira/history").json()
    assert [h["emotions"] for h in history] == [{"joy": 0.8}, {"joy": 0.8}] and history[0]["source"] == "api"
    sprites = server.get("/characters/mira/assets?kind=cg").json()
    assert [s["sha256"] for s in sprites] == [asset["sha256"]] and sprites[0]["dominant"] == "joy"


@pytest.mark.slow  # starts a `charforge serve` process
def test_errors_are_structured_with_the_right_status(server):
    recorded = len(server.get("/characters/mira/history").json())
    missing = server.get("/characters/nobody")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad_label = server.post("/characters/mira/emotion", {"emotions": {"jyo": 0.5}})
    assert bad_label.status_code == 422 and "did you mean 'joy'" in bad_label.json()["error"]["message"]
    out_of_range = server.post("/characters/mira/emotion", {"emotions": {"joy": 3}})
    assert out_of_range.status_code == 422 and "emotions.joy" in out_of_range.json()["error"]["message"]
    not_json = requests.post(server.url + "/characters/mira/emotion", data="{", timeout=10,
                             headers={"Content-Type": "application/json"})  # fmt: skip
    assert not_json.status_code == 422 and "error" in not_json.json()
    assert server.get("/assets/cg/00/../../../charforge.db").status_code == 404
    assert server.get("/assets/cg/ab/" + "0" * 64 + ".png").status_code == 404
    assert server.get("/jobs/999").status_code == 404
    huge = server.post("/characters/mira/emotion", {"emotions": {"joy": 0.5}, "reason": "x" * 100_000})
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "body_too_large"
    chunked = requests.post(server.url + "/characters/mira/emotion", data=iter([b'{"reason": "', b"y" * 70_000, b'"}']),
                            headers={"Content-Type": "application/json"}, timeout=10)  # no Content-Length
    assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "body_too_large"
    assert len(server.get("/characters/mira/history").json()) == recorded  # the bad calls recorded nothing


@pytest.mark.slow  # starts a `charforge serve` process
def test_api_key_guards_every_route_but_health_and_the_studio(workspace, tmp_path):
    with serve(workspace, "--api-key", KEY, log_dir=tmp_path) as server:
        assert server.get("/health").status_code == 200
        assert server.get("/").status_code == 200 and "charforge studio" in server.get("/").text
        assert server.get("/static/studio.js").status_code == 200
        for path in ("/characters", "/docs", "/openapi.json", "/jobs"):
            refused = server.get(path)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            assert refused.json()["error"]["code"] == "unauthorized"
        assert server.get("/characters", headers={"Authorization": "Bearer wrong-key-123"}).status_code == 401
        assert server.get("/characters", headers={"X-API-Key": KEY[:-1]}).status_code == 401
        assert server.get("/characters", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert server.get("/characters", headers={"X-API-Key": KEY}).status_code == 200
        assert server.post("/characters/mira/emotion", {"emotions": {"joy": 0.5}}).status_code == 401
        assert server.get("/openapi.json", headers={"X-API-Key": KEY}).json()["info"]["title"] == "charforge"


@pytest.mark.slow
def test_the_key_can_come_from_the_environment(workspace, tmp_path):
    with serve(workspace, log_dir=tmp_path, env={"CHARFORGE_API_KEY": KEY}) as server:
        assert server.get("/characters").status_code == 401
        assert server.get("/characters", headers={"X-API-Key": KEY}).status_code == 200
        assert "charforge studio: http://127.0.0.1:" in server.log.read_text()


@pytest.mark.slow  # starts a `charforge serve` process
def test_a_restart_resumes_queued_and_interrupted_jobs(workspace, tmp_path):
    with Forge.open(workspace) as forge:  # what a server that died left behind
        queued = forge.create_job("feel", {"state": {"sadness": 0.6}}, character="mira")
        interrupted = forge.create_job("feel", {"state": {"anger": 0.7}}, character="mira")
        forge.update_job(interrupted.id, status="running", progress=0.05)
    with serve(workspace, log_dir=tmp_path) as server:
        for job_id in (queued.id, interrupted.id):
            job = server.wait_job(job_id)
            assert job["status"] == "done", job
            assert server.get(job["result"]["asset"]["url"]).status_code == 200
        answer = server.post("/characters/mira/render", {"state": {"sadness": 0.6}})
        assert answer.status_code == 200 and answer.json()["cached"]


@pytest.mark.slow
def test_queue_only_server_leaves_jobs_for_the_next_worker(workspace, tmp_path):
    with serve(workspace, "--no-worker", log_dir=tmp_path) as server:
        answer = server.post("/characters/mira/emotion", {"emotions": {"fear": 0.6}})
        assert answer.status_code == 202
        job_id = answer.json()["job"]["id"]
        assert server.get(f"/jobs/{job_id}").json()["status"] == "queued"
    with serve(workspace, log_dir=tmp_path) as server:
        assert server.wait_job(job_id)["status"] == "done"


@pytest.mark.slow
def test_character_crud_and_music(workspace, tmp_path, tiny_model_dir):
    with serve(workspace, "--model", str(tiny_model_dir), log_dir=tmp_path) as server:
        created = server.post("/characters", {"name": "rin", "prompt": "portrait of a boy with black hair, blue outfit"})
        assert created.status_code == 201, created.text
        base_job = created.json()["render"]["job"]
        assert server.wait_job(base_job["id"])["status"] == "done"
        assert server.post("/characters", {"name": "rin", "prompt": "x"}).status_code == 409
        assert server.post("/characters", {"name": "../evil", "prompt": "x"}).status_code == 422
        patched = requests.patch(server.url + "/characters/rin", json={"display_name": "Rin T."}, timeout=10)
        assert patched.status_code == 200 and patched.json()["display_name"] == "Rin T."
        assert requests.delete(server.url + "/characters/rin", timeout=10).status_code == 204
        assert server.get("/characters/rin").status_code == 404

        music = server.post("/characters/mira/bgm", {"state": {"joy": 0.9}, "seconds": 2, "steps": 2})
        assert music.status_code == 202, music.text
        job = server.wait_job(music.json()["job"]["id"])
        assert job["status"] == "done", job
        track = server.get(job["result"]["asset"]["url"])
        assert track.headers["content-type"] == "audio/wav" and track.content[:4] == b"RIFF"
        again = server.post("/characters/mira/bgm", {"state": {"joy": 0.9}, "seconds": 2, "steps": 2})
        assert again.status_code == 200 and again.json()["asset"] == job["result"]["asset"]


@pytest.mark.slow  # starts a `charforge serve` process
def test_game_client_example_polls_then_downloads_once(server, tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "game_client.py"
    spec = importlib.util.spec_from_file_location("game_client_example", path)
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)

    asset = client.feel(server.url, None, "mira", {"surprise": 0.7}, poll=0.1)  # a new state: 202, then polling
    out = tmp_path / "cg.png"
    assert client.download(server.url, None, asset, out) is True
    assert hashlib.sha256(out.read_bytes()).hexdigest() == asset["sha256"]
    assert client.download(server.url, None, asset, out) is False  # unchanged: 304, no bytes


@pytest.mark.slow  # starts a `charforge serve` process
def test_every_acknowledged_emotion_survives_a_killed_server_in_order(workspace, tmp_path):
    """Four clients record states at once; the server is then killed (SIGKILL, no shutdown at all): every
    state it answered is in the history, and each client's in the order it sent them."""
    import threading

    sent: dict[int, list[float]] = {t: [] for t in range(4)}
    errors: list[str] = []

    def client(server, t: int) -> None:
        with requests.Session() as session:
            for i in range(12):
                fear = round(0.05 + 0.01 * (12 * t + i), 2)  # one distinct state per (client, turn)
                answer = session.post(server.url + "/characters/mira/emotion", json={"emotions": {"fear": fear}},
                                      timeout=30)  # fmt: skip
                if answer.status_code not in (200, 202):
                    errors.append(answer.text)
                    return
                sent[t].append(fear)

    with serve(workspace, "--no-worker", "--renders-per-minute", "1000", log_dir=tmp_path) as server:
        clients = [threading.Thread(target=client, args=(server, t)) for t in range(4)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(120)
        server.process.kill()
        server.process.wait(30)
    assert errors == [] and all(len(states) == 12 for states in sent.values())
    with Forge.open(workspace) as forge:
        history = [round(e.state.fear, 2) for e in forge.get("mira").store.history()]
    assert sorted(history) == sorted(f for states in sent.values() for f in states)
    for states in sent.values():
        assert [f for f in history if f in states] == states
