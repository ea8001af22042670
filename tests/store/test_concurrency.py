"""Several processes writing the same characters at once: nothing lost, nothing locked, versions consistent."""

from __future__ import annotations

import multiprocessing as mp
import threading
from collections import Counter

import pytest

from charforge import Forge
from charforge.errors import ConflictError
from charforge.store.db import Database

pytestmark = pytest.mark.slow  # four worker processes

PROCESSES = 4
STATES_PER_PROCESS = 100
NAMES = ("mira", "nell")


def _worker(workspace: str, db_url: str | None, worker: int, start, results) -> None:  # type: ignore[no-untyped-def]
    """Record 100 states, alternating between the two characters; report errors instead of raising."""
    try:
        with Forge.open(workspace, db_url=db_url) as forge:
            characters = [forge.get(n) for n in NAMES]
            start.wait()  # all processes begin writing together
            for i in range(STATES_PER_PROCESS):
                # Each state is unique to (worker, i), so every row can be traced back to its writer.
                characters[i % 2].record_emotion({"joy": worker / 10, "fear": i / 1000}, source="batch")
        results.put((worker, None))
    except BaseException as exc:  # noqa: BLE001 - the parent asserts on it
        results.put((worker, f"{type(exc).__name__}: {exc}"))


def test_four_processes_recording_on_two_characters(tmp_path, db_url):
    """On SQLite and on PostgreSQL (`db_url`)."""
    with Forge.open(tmp_path, db_url=db_url) as forge:
        for name in NAMES:
            forge.create(name, prompt="portrait of a girl")
        start_versions = {c.name: c.version for c in forge.list()}

    ctx = mp.get_context("spawn")
    start = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), db_url, w, start, results)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    outcomes = dict(results.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert outcomes == {w: None for w in range(PROCESSES)}  # in particular no "database is locked"

    with Forge.open(tmp_path, db_url=db_url) as forge:
        rows = [(c.name, e.version, e.state.joy, e.state.fear) for c in forge.list() for e in c.store.history()]
        final = {c.name: c.version for c in forge.list()}

    assert len(rows) == PROCESSES * STATES_PER_PROCESS
    # every (worker, i) write is there exactly once, on the character it was meant for
    written = Counter((slug, round(joy * 10), round(fear * 1000)) for slug, _, joy, fear in rows)
    expected = Counter((NAMES[i % 2], w, i) for w in range(PROCESSES) for i in range(STATES_PER_PROCESS))
    assert written == expected
    for name in NAMES:
        versions = sorted(v for slug, v, _, _ in rows if slug == name)
        n = len(versions)
        # No two writers saw the same version (no lost update) and the counter ended where it should.
        assert versions == list(range(start_versions[name] + 1, start_versions[name] + n + 1))
        assert final[name] == start_versions[name] + n


def test_threads_of_one_process_recording_at_once(tmp_path):
    """A server's request threads: each write waits its turn on the process's writer lock (no busy-handler
    sleeps), two `Forge`s on the same file in one process share that lock, and nothing is lost."""
    threads, per_thread = 8, 25
    with Forge.open(tmp_path) as forge, Forge.open(tmp_path) as second:
        start = forge.create("mira", prompt="portrait of a girl").version
        errors: list[str] = []

        def record(t: int) -> None:
            mira = (forge if t % 2 else second).get("mira")
            try:
                for i in range(per_thread):
                    mira.record_emotion({"joy": t / 10, "fear": i / 1000}, source="batch")
            except Exception as exc:  # noqa: BLE001 - asserted below
                errors.append(f"{type(exc).__name__}: {exc}")

        workers = [threading.Thread(target=record, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
        history = forge.get("mira").store.history()
        assert errors == [] and forge.repository.db._writers is second.repository.db._writers
        assert sorted(e.version for e in history) == list(range(start + 1, start + threads * per_thread + 1))
        assert Counter((round(e.state.joy * 10), round(e.state.fear * 1000)) for e in history) == Counter(
            (t, i) for t in range(threads) for i in range(per_thread)
        )


def test_a_writer_held_too_long_gives_the_busy_error_not_a_hang(tmp_path):
    Forge.open(tmp_path).close()  # creates the schema
    db = Database(tmp_path / "charforge.db", busy_timeout=0.2)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.write():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        with pytest.raises(ConflictError, match="locked"), db.write():
            pass
    finally:
        release.set()
        holder.join(10)
    with db.write():  # and the lock is free again afterwards
        pass
    db.close()
