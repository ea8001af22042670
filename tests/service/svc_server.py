"""Start a real `charforge serve` on a free loopback port, in its own process, as a user would (shared by tests/service)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

requests = pytest.importorskip("requests")

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, process: subprocess.Popen, url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    def get(self, path: str, **kw):
        return requests.get(self.url + path, timeout=30, **kw)

    def post(self, path: str, body=None, **kw):
        return requests.post(self.url + path, json=body, timeout=30, **kw)

    def wait_job(self, job_id: int, timeout: float = 120.0, **kw) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(f"/jobs/{job_id}", **kw).json()
            if job["status"] not in ("queued", "running"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish: {job}")


@contextmanager
def serve(workspace: Path, *args: str, log_dir: Path, env: dict | None = None):
    """`charforge serve` as a user starts it; yields once /health answers, stops it (SIGTERM) afterwards."""
    port = free_port()
    log = log_dir / f"serve-{port}.log"
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}  # fmt: skip
    if "CHARFORGE_API_KEY" not in (env or {}):  # a key in the developer's shell must not leak into the test
        environ.pop("CHARFORGE_API_KEY", None)
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "from charforge.cli.main import main; main()", "serve", "--port", str(port),
             "--workspace", str(workspace), *args],
            stdout=out, stderr=subprocess.STDOUT, env=environ,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(url + "/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield Server(process, url, log)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
