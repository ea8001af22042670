"""Class 2 of issue #12: a crash at any point leaves a workspace that the same command repairs.

Each test runs the real CLI in a child process that pauses at a named point of its writes
(`charforge.faults`), kills it there with SIGKILL, then re-runs the same command to completion and
checks the workspace: `PRAGMA integrity_check` ok, no row pointing at a missing or partial file, no
temp file left, a consistent identity. On the old code the re-run `create` said "already exists"
for a character without identity, and `reinvert` could leave a new trajectory beside old per-step data.
"""

from __future__ import annotations

import json
import signal
import sqlite3

import pytest
import torch
from helpers.reliability import PROMPT, charforge_process, health, wait_for


def run_killed_at(point: str, tmp_path, *args: object) -> None:
    marker = tmp_path / f"paused-{point}"
    marker.unlink(missing_ok=True)
    proc = charforge_process(*args, pause_at=point, marker=marker)
    wait_for(marker, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def run_to_end(*args: object) -> tuple[int, str, str]:
    proc = charforge_process(*args)
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def identity_consistent(ws) -> None:
    from charforge.character.identity import load_identity
    from charforge.forge import Forge

    with Forge.open(ws) as forge:
        identity = load_identity(forge.get("mira"))
    inv = identity.inversion
    assert inv.trajectory.shape[0] == inv.steps + 1
    assert all(tensor.shape[0] == inv.steps for tensor in inv.step_tensors.values())


@pytest.mark.slow
def test_create_killed_while_building_the_identity_is_finished_by_the_same_create(tmp_path, tiny_model_dir):
    ws = tmp_path / "ws"
    create = ("create", "mira", "--prompt", PROMPT, "--seed", 7, "--model", tiny_model_dir, "--steps", 3,
              "-w", ws, "--json")  # fmt: skip
    run_killed_at("create-row-written", tmp_path, *create)  # the row exists, no identity yet
    run_killed_at("identity-partly-written", tmp_path, *create)  # killed inside the identity transaction
    with sqlite3.connect(ws / "charforge.db") as conn:
        assert conn.execute("SELECT count(*) FROM identity_artifacts").fetchone()[0] == 0  # rolled back whole
    code, out, err = run_to_end(*create)
    assert code == 0, err
    assert json.loads(out)["name"] == "mira" and err.count("\n") <= 1
    assert health(ws) == []
    identity_consistent(ws)


@pytest.mark.slow
def test_emote_killed_mid_write_is_repaired_by_the_same_emote(tmp_path, drawn):
    emote = ("emote", "mira", "joy=0.4", "-w", drawn, "--json")
    run_killed_at("atomic-write-before-rename", tmp_path, *emote)
    assert list(drawn.rglob("*.tmp")), "the kill should have left the temp file of the new CG"
    code, out, err = run_to_end(*emote)
    assert code == 0, err
    data = json.loads(out)
    assert not data["cached"] and data["state"] == {"joy": 0.4}
    assert health(drawn) == []
    code, out, _ = run_to_end(*emote)
    assert code == 0 and json.loads(out)["cached"]


@pytest.mark.slow
def test_reinvert_killed_between_identity_artifacts_keeps_the_old_identity_whole(tmp_path, drawn):
    from charforge.forge import Forge

    with Forge.open(drawn) as forge:
        before = {(a.kind, a.name): a.sha256 for a in forge.get("mira").store.identity()}
    reinvert = ("reinvert", "mira", "--steps", 3, "-w", drawn)
    run_killed_at("identity-partly-written", tmp_path, *reinvert)
    with Forge.open(drawn) as forge:
        after_kill = {(a.kind, a.name): a.sha256 for a in forge.get("mira").store.identity()}
    assert after_kill == before  # nothing of the interrupted set is visible
    identity_consistent(drawn)
    code, _, err = run_to_end(*reinvert)
    assert code == 0, err
    with Forge.open(drawn) as forge:
        assert forge.get("mira").store.get_identity("inverted_latents").metadata["inversion"]["steps"] == 3
    identity_consistent(drawn)
    assert health(drawn) == []


@pytest.mark.slow
def test_delete_killed_after_removing_files_keeps_the_character_and_finishes_on_rerun(tmp_path, drawn):
    delete = ("delete", "mira", "--yes", "-w", drawn)
    run_killed_at("delete-files-removed", tmp_path, *delete)
    with sqlite3.connect(drawn / "charforge.db") as conn:
        assert conn.execute("SELECT slug FROM characters").fetchall() == [("mira",)]  # rows not committed
    code, out, err = run_to_end("show", "mira", "-w", drawn, "--json")  # still a usable character
    assert code == 0 and json.loads(out)["name"] == "mira", err
    code, _, err = run_to_end(*delete)
    assert code == 0, err
    assert health(drawn) == [] and not [p for p in (drawn / "assets").rglob("*") if p.is_file()]


def test_a_mixed_identity_set_is_refused_on_load(drawn):
    """Defence in depth: an identity pieced together from two builds (as an interrupted write of the
    old code left it) is reported, not used."""
    from charforge.character.identity import load_identity
    from charforge.errors import IntegrityError
    from charforge.forge import Forge

    with Forge.open(drawn) as forge:
        mira = forge.get("mira")
        latents = mira.store.get_identity("inverted_latents")
        longer = torch.cat([latents.tensors["trajectory"], latents.tensors["trajectory"][-1:]])
        mira.store.put_identity("inverted_latents", {"trajectory": longer}, metadata=latents.metadata)
        with pytest.raises(IntegrityError, match="reinvert"):
            load_identity(mira)
