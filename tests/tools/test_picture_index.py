"""A server's cached answers come from memory (`PictureIndex`): no query but the history append, yet never
the old picture once anything it depends on changed (database rows, weight files, the picture file)."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
import torch
from sqlalchemy import Engine, event

from charforge.errors import ConflictError
from charforge.store.models import IdentityKind
from charforge.tools import Toolbox

JOY = {"joy": 0.8}


def ok(outcome):
    assert outcome["ok"], outcome
    return outcome["result"]


def feel(box: Toolbox, emotions=JOY):
    return ok(box.call_tool("set_emotion", {"name": "mira", "emotions": emotions}))


@pytest.fixture
def box(cast):
    """A toolbox without a worker (queued jobs stay queued), Mira's joy already drawn."""
    cast.get("mira").feel(JOY, record=False)
    return Toolbox(cast)


def test_a_cached_answer_runs_only_the_append(box):
    assert feel(box)["cached"]  # the first answer fills the index
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement.split()[0].upper())

    history = box.forge.get("mira").store.history_count()
    event.listen(Engine, "before_cursor_execute", seen)
    try:
        answers = [feel(box) for _ in range(5)]
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert all(a["cached"] and a["asset"] == answers[0]["asset"] for a in answers)
    # per call, the append's transaction only: the row read for it, its UPDATE, the history INSERT
    assert statements == ["BEGIN", "SELECT", "UPDATE", "INSERT"] * 5
    assert box.forge.get("mira").store.history_count() == history + 5


def test_changed_weight_files_are_not_answered_from_memory(box, tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    mira = box.forge.get("mira")
    mira.update(model=str(model))  # the same bytes elsewhere: the same weights hash, the same picture
    assert feel(box)["cached"] and feel(box)["cached"]
    weights = sorted(model.rglob("*.safetensors"))[0]
    weights.write_bytes(weights.read_bytes() + b" ")  # no database change at all
    answer = feel(box)
    assert not answer["cached"] and answer["job"]["status"] == "queued"


def test_a_damaged_picture_file_is_not_answered_from_memory(box):
    asset = feel(box)["asset"]
    assert feel(box)["cached"]
    path = box.forge.workspace.root / asset["url"].lstrip("/")
    path.write_bytes(path.read_bytes()[:-1])
    answer = feel(box)
    assert not answer["cached"] and answer["asset"] is None


def test_a_rename_and_a_new_character_under_the_old_name(box, cast):
    first = feel(box)
    assert first["cached"]
    cast.rename("mira", "mara")
    gone = box.call_tool("set_emotion", {"name": "mira", "emotions": JOY})
    assert not gone["ok"] and gone["error"]["code"] == "not_found"
    assert ok(box.call_tool("set_emotion", {"name": "mara", "emotions": JOY}))["cached"]
    cast.create("mira", prompt="portrait of a boy with black hair", seed=3, model=cast.get("mara").model_ref,
                build_identity=False)  # fmt: skip
    answer = feel(box)
    assert answer["character"] == "mira" and not answer["cached"]
    assert len(cast.get("mira").store.history()) == 1 and cast.get("mara").store.history()[-1].state.joy > 0


def test_a_burst_while_the_identity_changes(box, cast):
    """Eight threads of cached calls while another process's connection adds an identity artifact: every
    call begun after that commit is answered as uncached, and every call is in the history, in order."""
    from charforge.forge import Forge

    assert feel(box)["cached"]
    start = cast.get("mira").version
    calls: list[tuple[float, bool]] = []
    committed: list[float] = []
    errors: list[str] = []
    done = threading.Event()

    def client() -> None:
        try:
            while not done.is_set():
                begun = time.monotonic()
                calls.append((begun, feel(box)["cached"]))
        except Exception as exc:  # noqa: BLE001 - asserted below
            errors.append(repr(exc))

    clients = [threading.Thread(target=client, daemon=True) for _ in range(8)]
    for t in clients:
        t.start()
    try:
        time.sleep(0.2)
        with Forge.open(cast.workspace.root) as other:
            for _ in range(100):  # a definition change is compare-and-swap, and every append moves the version
                try:
                    other.get("mira").store.put_identity(IdentityKind.MASK, {"mask": torch.ones(1, 8, 8)}, name="c")
                    break
                except ConflictError:
                    continue
        committed.append(time.monotonic())
        time.sleep(0.2)
    finally:
        done.set()
        for t in clients:
            t.join(120)
    after = [c for begun, c in calls if begun > committed[0]]
    assert errors == [] and after and not any(after)  # never the old picture once the change is committed
    assert any(c for begun, c in calls if begun < committed[0])  # and the index did answer before
    versions = [e.version for e in cast.get("mira").store.history()][-len(calls) :]
    # every call recorded once, in one sequence with the identity change (one version of its own)
    assert versions == sorted(versions) and len(set(versions)) == len(calls)
    assert versions[-1] == start + len(calls) + 1
