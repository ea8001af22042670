"""`Database.stamp`: unchanged by this database's own history appends, moved by any other commit (another
connection of this process, another process), so what a server keeps in memory is dropped in time."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from charforge import Forge
from charforge.errors import NotFound


@pytest.mark.slow
def test_own_appends_keep_the_stamp_and_every_other_commit_moves_it(tmp_path):
    with Forge.open(tmp_path) as forge, Forge.open(tmp_path) as other:
        mira = forge.create("mira", prompt="portrait of a girl")
        db = forge.repository.db
        before = db.stamp()
        for i in range(10):
            mira.record_emotion({"joy": i / 10})
        assert db.stamp() == before
        assert [e.state.joy for e in mira.store.history()] == pytest.approx([i / 10 for i in range(10)])

        mira.update(prompt="portrait of a girl with red hair")  # this process, through another connection
        edited = db.stamp()
        assert edited != before
        assert db.stamp() == edited  # reading it does not move it

        other.get("mira").record_emotion({"fear": 0.5})  # the appends of another `Database` are changes here
        appended = db.stamp()
        assert appended != edited

        script = (
            "import sys\nfrom charforge import Forge\n"
            "with Forge.open(sys.argv[1]) as f:\n    f.get('mira').record_emotion({'anger': 0.5})\n"
        )
        subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=120)
        assert db.stamp() != appended
        assert mira.store.history(limit=1)[0].state.anger == pytest.approx(0.5)


def test_the_stamp_waits_for_an_append_and_then_stays(tmp_path):
    """Appends from many threads share the watched connection: all land, in one version sequence, and the
    stamp read between them never moves."""
    with Forge.open(tmp_path) as forge:
        mira = forge.create("mira", prompt="portrait of a girl")
        start, db = mira.version, forge.repository.db
        before = db.stamp()
        seen: list[object] = []
        errors: list[str] = []

        def record(t: int) -> None:
            try:
                for i in range(20):
                    forge.get("mira").record_emotion({"joy": t / 10, "fear": i / 100})
                    seen.append(db.stamp())
            except Exception as exc:  # noqa: BLE001 - asserted below
                errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=record, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == [] and set(seen) == {before}
        versions = [e.version for e in mira.store.history()]
        assert versions == list(range(start + 1, start + 121))  # in commit order, none lost, none twice


def test_an_append_to_a_deleted_character_fails_cleanly_and_the_next_one_works(tmp_path):
    with Forge.open(tmp_path) as forge:
        mira = forge.create("mira", prompt="portrait of a girl")
        nell = forge.create("nell", prompt="portrait of a boy")
        forge.delete("mira")
        with pytest.raises(NotFound):
            mira.record_emotion({"joy": 0.5})
        nell.record_emotion({"joy": 0.5})  # the watched connection survived the failed append
        assert len(nell.store.history()) == 1


def test_a_server_database_has_no_stamp_and_still_appends(any_forge):
    """On PostgreSQL nothing tells whether another writer came by: no stamp (callers then never cache)."""
    mira = any_forge.create("mira", prompt="portrait of a girl")
    mira.record_emotion({"joy": 0.5})
    stamp = any_forge.repository.db.stamp()
    assert (stamp is None) == (any_forge.repository.db.dialect != "sqlite")
    assert len(mira.store.history()) == 1
