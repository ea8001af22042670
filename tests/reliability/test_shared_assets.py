"""Class 6 of issue #12: content-addressed files are shared between characters; deleting one
character while another process stores identical bytes must never leave the second one's freshly
returned asset without its file.

On the old code the check "is the file there?" and the unlink of unreferenced files both ran outside
the write lock, so `delete` could unlink the file between another writer's check and its row insert.
"""

from __future__ import annotations

import signal
import threading

import pytest
from helpers.reliability import charforge_process, health, wait_for

from charforge.forge import Forge

SAME = b"\x89PNG identical bytes rendered by two characters"


@pytest.mark.slow
def test_delete_holding_the_lock_then_a_store_of_the_same_bytes_keeps_the_file(tmp_path):
    ws = tmp_path / "ws"
    with Forge.open(ws) as forge:
        forge.create("a", prompt="portrait of a girl").store.add_asset(SAME, "cg", "1" * 64)
        b = forge.create("b", prompt="portrait of a boy")
        marker = tmp_path / "paused"
        proc = charforge_process("delete", "a", "--yes", "-w", ws, pause_at="delete-files-removed", marker=marker)
        wait_for(marker, proc)  # `a`'s file is unlinked, its rows not yet committed; the lock is held
        stored: list = []
        writer = threading.Thread(target=lambda: stored.append(b.store.add_asset(SAME, "cg", "2" * 64)))
        writer.start()  # waits for the write lock
        writer.join(timeout=1.0)
        assert writer.is_alive(), "the store of identical bytes must wait for the delete's lock"
        marker.unlink()  # let the delete commit
        assert proc.wait(timeout=120) == 0, proc.communicate()
        writer.join(timeout=60)
        [asset] = stored
        assert asset.intact(), "the freshly returned asset lost its file"
        assert [c.name for c in forge.list()] == ["b"]
    assert health(ws) == []


@pytest.mark.slow
def test_deletes_racing_identical_stores_never_orphan_a_row(tmp_path, monkeypatch):
    """Many rounds of delete-vs-store of the same bytes from two threads with their own connections.

    Hashing and unlinking are slowed a little, widening the windows a race needs (between a store's
    "is the file there?" and its row, between a delete's "is the file still used?" and its unlink)
    so the old code fails in a few rounds; with both done under the write lock no round can."""
    import pathlib
    import time

    import charforge.store.character_store as character_store

    slow_hash, slow_unlink = character_store.sha256_bytes, pathlib.Path.unlink
    monkeypatch.setattr(character_store, "sha256_bytes", lambda data: (time.sleep(0.002), slow_hash(data))[1])
    monkeypatch.setattr(pathlib.Path, "unlink", lambda self, *a, **k: (time.sleep(0.002), slow_unlink(self, *a, **k))[1])
    ws = tmp_path / "ws"
    rounds = 60
    gate = threading.Barrier(2, timeout=60)
    errors: list[BaseException] = []

    def deleter() -> None:  # each round: `a` holds the file alone, then is deleted while `b` stores it
        try:
            with Forge.open(ws) as forge:
                for _ in range(rounds):
                    forge.create("a", prompt="portrait of a girl").store.add_asset(SAME, "cg", "1" * 64)
                    gate.wait()
                    forge.delete("a")
                    gate.wait()
                    gate.wait()
        except BaseException as exc:  # reported below
            errors.append(exc)
            gate.abort()

    thread = threading.Thread(target=deleter)
    thread.start()
    lost = 0
    with Forge.open(ws) as forge:
        for _ in range(rounds):
            gate.wait()
            asset = forge.create("b", prompt="portrait of a boy").store.add_asset(SAME, "cg", "2" * 64)
            gate.wait()  # the delete is over: the asset handed back must still have its file
            lost += not asset.intact()
            forge.delete("b")
            gate.wait()
    thread.join()
    assert not errors, errors
    assert lost == 0, f"{lost} of {rounds} freshly stored assets lost their file to a concurrent delete"
    assert health(ws) == []


@pytest.mark.slow
@pytest.mark.parametrize("kill", [False, True])
def test_a_killed_delete_leaves_shared_files_of_others(tmp_path, kill):
    ws = tmp_path / "ws"
    with Forge.open(ws) as forge:
        forge.create("a", prompt="portrait of a girl").store.add_asset(SAME, "cg", "1" * 64)
        kept = forge.create("b", prompt="portrait of a boy").store.add_asset(SAME, "cg", "2" * 64)
    marker = tmp_path / "paused"
    proc = charforge_process("delete", "a", "--yes", "-w", ws, pause_at="delete-files-removed", marker=marker)
    wait_for(marker, proc)
    if kill:
        proc.send_signal(signal.SIGKILL)
    else:
        marker.unlink()
    proc.wait(timeout=120)
    assert kept.intact()  # b still uses the file: it was never unlinked
    assert health(ws) == []
