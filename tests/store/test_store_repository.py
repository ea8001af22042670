"""The store's seams: a database at any URL, one clear error for a bad one, snapshots that move on commit."""

from __future__ import annotations

import sqlite3

import pytest
import torch

from charforge import EmotionState, Forge
from charforge.errors import AlreadyExists, ConflictError, InvalidInput
from charforge.paths import Workspace
from charforge.store import Database, Repository

PROMPT = "portrait of a girl with long red hair"


def test_forge_on_another_database_url(tmp_path):
    elsewhere = tmp_path / "db" / "cast.db"
    elsewhere.parent.mkdir()
    url = f"sqlite:///{elsewhere}"
    with Forge.open(tmp_path / "ws", db_url=url) as forge:
        forge.create("mira", prompt=PROMPT).record_emotion({"joy": 0.4})
        assert forge.db.path == elsewhere and forge.db.dialect == "sqlite"
    assert not (tmp_path / "ws" / "charforge.db").exists()  # the workspace holds only the files
    assert sqlite3.connect(elsewhere).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Forge.open(tmp_path / "ws", db_url=url) as forge:
        assert forge.get("mira").current_state() == EmotionState(joy=0.4)
    with Forge.open(tmp_path / "ws") as forge:  # the default database is another one
        assert forge.list() == []


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql+psycopg://charforge:secret@127.0.0.1:9/none", "cannot open the database"),
        ("nosuchdialect://x", "cannot use database URL"),
        ("not a url://x", "not a database URL"),
    ],
)
def test_bad_database_urls_are_one_clear_error(tmp_path, url, says):
    if url.startswith("postgresql"):
        pytest.importorskip("psycopg")
    with pytest.raises(InvalidInput, match=says) as err:
        Forge.open(tmp_path, db_url=url)
    assert "secret" not in str(err.value)


def test_repository_without_a_forge(tmp_path):
    workspace = Workspace(tmp_path)
    workspace.ensure()
    db = Database.from_url(f"sqlite:///{workspace.db_path}")
    db.ensure_current()
    repo = Repository(db, workspace)
    row = repo.create_character(
        "mira", display_name="Mira", base_prompt=PROMPT, negative_prompt="", seed=1, model_ref=None, settings={}
    )
    with pytest.raises(AlreadyExists):
        repo.create_character(
            "mira", display_name="M", base_prompt=PROMPT, negative_prompt="", seed=2, model_ref=None, settings={}
        )
    store = repo.character(row)
    store.record_emotion({"fear": 0.5}, source="batch")
    assert repo.get_character("mira").version == store.row.version == row.version + 1
    assert [e.source for e in store.history()] == ["batch"] and repo.has_character("mira")
    assert repo.delete_character("mira") == 0 and repo.list_characters() == []
    db.close()


def test_a_refused_change_leaves_the_snapshot_where_it_was(forge):
    mira = forge.create("mira", prompt=PROMPT)
    forge.create("nell", prompt=PROMPT)
    with pytest.raises(AlreadyExists):
        mira.rename("nell")
    with pytest.raises(InvalidInput):
        mira.store.define(slug="x")  # not a definition column
    assert (mira.name, mira.version) == ("mira", 1)
    mira.update(seed=5)  # the snapshot is still current, so no refresh is needed
    assert (forge.get("mira").seed, mira.version) == (5, 2)


def test_emotion_state_coerce():
    assert EmotionState.coerce(None, {"joy": 0.5}) == EmotionState(joy=0.5)
    assert EmotionState.coerce({"anger": 0.2}) == EmotionState(anger=0.2)
    assert EmotionState.coerce(None) == EmotionState.neutral()
    assert EmotionState.coerce(None, {}, default=EmotionState(fear=0.3)) == EmotionState(fear=0.3)
    assert EmotionState.coerce(None, {"joy": 0.1}, default=EmotionState(fear=0.3)) == EmotionState(joy=0.1)
    with pytest.raises(InvalidInput, match="not both"):
        EmotionState.coerce({"joy": 0.5}, {"fear": 0.5})


def test_the_store_on_a_server_database(tmp_path, postgres_url):
    """The same repository on another dialect: migrations both ways, compare-and-swap, appends, jobs
    (on the tests' throwaway PostgreSQL server; skipped, saying why, without one)."""
    db = Database.from_url(postgres_url)
    assert db.dialect != "sqlite"
    db.downgrade("base")  # the database is the test's own: start empty
    db.close()
    with Forge.open(tmp_path, db_url=postgres_url) as forge:
        assert forge.db.current_revision() == Database.head_revision()
        mira = forge.create("mira", prompt=PROMPT, seed=3)
        mira.record_emotion({"joy": 0.5})
        mira.store.put_identity("mask", {"m": torch.ones(2, 2)}, name="face")
        assert torch.equal(mira.store.get_identity("mask", name="face").tensors["m"], torch.ones(2, 2))
        asset = mira.store.add_asset(b"png", "cg", "0" * 64, {"x": 1})
        assert mira.store.find_asset("cg", "0" * 64) == asset
        forge.get("mira").update(prompt="portrait of a boy")
        with pytest.raises(ConflictError):
            mira.update(prompt="portrait of a cat")
        with pytest.raises(AlreadyExists):
            forge.create("mira", prompt=PROMPT)
        job = forge.create_job("regenerate", {"k": 1}, character="mira")
        assert forge.update_job(job.id, status="running", progress=0.5).status == "running"
        assert [e.state for e in forge.get("mira").store.history()] == [EmotionState(joy=0.5)]
        forge.rename("mira", "mirabel")
        forge.delete("mirabel")
        assert forge.list() == [] and forge.get_job(job.id).character is None
        assert not asset.path.exists()
        forge.db.downgrade("base")
