"""The HTTP service's overhead: a cached `POST /characters/{name}/emotion` round trip, and render throughput
through the job queue against calling `Character.feel` directly.

    python benchmarks/bench_service.py [--model DIR] [--steps 10] [--requests 500] [--clients 8] [--states 6]
                                       [--service-batch N]

(a) Cached: a real `charforge serve` process on a loopback port; `--clients` threads, each with its own
    keep-alive connection, send `--requests` POSTs in total for a state whose CG is cached (every call
    also records the state in the history, as a chat front end would). Wall-clock median and p99
    (target: median <= 20 ms), the median of one client alone (the cost of a request without queueing),
    and the server's CPU time per request (what the clients queue for; less sensitive to other load).
(b) Uncached: the same `--states` new states rendered (i) by `Character.feel` in this process and
    (ii) by the service (POST all, then poll each job every 0.25 s), each side on a fresh copy of the same
    workspace, model already loaded on both sides (one warm-up render each), torch on `--threads`
    threads on both sides. Throughput ratio service/direct (target >= 0.9), and the CPU time per render
    of this process (direct) and of the server (worker, requests and polls). The service's worker draws
    the jobs waiting for one character together (`serve --batch`, default 8); `--service-batch 1` makes
    it draw each job alone, as `Character.feel` does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import requests  # noqa: E402
import torch  # noqa: E402

from charforge.character.identity import build_identity  # noqa: E402
from charforge.forge import Forge  # noqa: E402

PROMPT = "portrait of a girl with long red hair, green eyes, fair skin, blue outfit, pink background, looking calm"
ROOT = Path(__file__).resolve().parents[1]
# A client polling faster takes CPU from the worker on a small machine; a game polls a few times a second.
POLL_SECONDS = 0.25


class Served:
    """`charforge serve` in a subprocess on a free loopback port."""

    def __init__(self, workspace: Path, threads: int, batch: int | None = None) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads),
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
        env.pop("CHARFORGE_API_KEY", None)
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from charforge.cli.main import main; main()", "serve", "--port", str(port),
             "--workspace", str(workspace), "--renders-per-minute", "10000",
             *(["--batch", str(batch)] if batch is not None else [])],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=2).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise SystemExit("the server did not start")

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far (Linux /proc; NaN elsewhere)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)

    def feel_all(self, states: list[dict[str, float]]) -> None:
        with requests.Session() as session:
            jobs = []
            for state in states:
                answer = session.post(f"{self.url}/characters/mira/emotion", json={"emotions": state}, timeout=60)
                assert answer.status_code == 202, answer.text
                jobs.append(answer.json()["job"]["id"])
            for job_id in jobs:
                job = session.get(f"{self.url}/jobs/{job_id}", timeout=60).json()
                while job["status"] in ("queued", "running"):  # jobs run in order: only the last wait adds time
                    time.sleep(POLL_SECONDS)
                    job = session.get(f"{self.url}/jobs/{job_id}", timeout=60).json()
                assert job["status"] == "done", job


def cached_round_trips(url: str, total: int, clients: int) -> list[float]:
    times: list[float] = []
    lock = threading.Lock()
    per_client = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]

    def client(count: int) -> None:
        with requests.Session() as session:
            local = []
            for _ in range(count):
                start = time.perf_counter()
                answer = session.post(f"{url}/characters/mira/emotion", json={"emotions": {"joy": 0.8}}, timeout=30)
                local.append(time.perf_counter() - start)
                assert answer.status_code == 200 and answer.json()["cached"], answer.text
            with lock:
                times.extend(local)

    threads = [threading.Thread(target=client, args=(n,)) for n in per_client]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped portrait-mini)")
    parser.add_argument("--steps", type=int, default=10, help="inversion/edit steps of the character")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--states", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cached-only", action="store_true", help="skip the uncached throughput comparison")
    parser.add_argument("--service-batch", type=int, default=None,
                        help="the server's `serve --batch` (default: its own, 8; 1: every job drawn alone)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.model is None:
        from charforge.engine.loading import default_model_path

        args.model = str(default_model_path())

    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        with Forge.open(template) as forge:
            mira = forge.create("mira", prompt=PROMPT, seed=7, model=args.model, build_identity=False)
            build_identity(mira, {"steps": args.steps})
        emotions = ["joy", "sadness", "anger", "fear", "surprise", "disgust", "trust", "anticipation"]
        states = [{emotions[i % len(emotions)]: round(0.55 + 0.1 * (i // len(emotions)), 2)}
                  for i in range(args.states)]  # fmt: skip
        warm = {"joy": 0.8}

        # (b) uncached: direct, in this process
        direct = served = direct_cpu = served_cpu = float("nan")
        if not args.cached_only:
            shutil.copytree(template, Path(tmp) / "direct")
            with Forge.open(Path(tmp) / "direct") as forge:
                mira = forge.get("mira")
                mira.feel(warm)
                start, start_cpu = time.perf_counter(), time.process_time()
                for state in states:
                    assert not mira.feel(state).cached
                direct, direct_cpu = time.perf_counter() - start, time.process_time() - start_cpu

        # (b) uncached through the queue, then (a) cached round trips on the same server
        shutil.copytree(template, Path(tmp) / "served")
        server = Served(Path(tmp) / "served", args.threads, args.service_batch)
        try:
            server.feel_all([warm])
            if not args.cached_only:
                start, start_cpu = time.perf_counter(), server.cpu_seconds()
                server.feel_all(states)
                served, served_cpu = time.perf_counter() - start, server.cpu_seconds() - start_cpu
            cached_round_trips(server.url, 20, 2)  # warm-up connections and caches
            single = cached_round_trips(server.url, 100, 1)
            cpu = server.cpu_seconds()
            times = cached_round_trips(server.url, args.requests, args.clients)
            cpu = server.cpu_seconds() - cpu
        finally:
            server.close()

    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, round(0.99 * len(ms)) - 1)]
    print(f"cached POST /emotion, {len(ms)} requests, {args.clients} clients: median {statistics.median(ms):.1f} ms, "
          f"p99 {p99:.1f} ms (target: median <= 20 ms); one client alone: median "
          f"{statistics.median(single) * 1000:.1f} ms; server CPU {cpu / len(ms) * 1000:.2f} ms per request; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if args.cached_only:
        return
    print(f"uncached, {len(states)} states at {args.steps} steps: "
          f"direct Character.feel {len(states) / direct:.3f} renders/s, "
          f"service queue {len(states) / served:.3f} renders/s, ratio {direct / served:.2f} (target >= 0.9); "
          f"CPU per render: direct {direct_cpu / len(states):.3f} s, server {served_cpu / len(states):.3f} s "
          f"(less sensitive to other load); load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
