"""`charforge regenerate` on the tiny model, in process: one job per asset, labels sharing a state share
one, skip what is stored, failed jobs retried, music loops, and the CLI's dry run and bad input
(test_regenerate_processes.py has the tests across processes)."""

from __future__ import annotations

import json

import pytest
from helpers import batch
from helpers.batch import check_store, db_args
from helpers.characters import forbid_model

from charforge.emotion.labels import SILLYTAVERN, label_set, label_state
from charforge.errors import InvalidInput
from charforge.jobs import Request, plan, regenerate

forge, mira = batch.forge, batch.mira  # the batch modules' fixtures (SQLite and PostgreSQL)


def test_plan_records_one_job_per_asset_and_labels_sharing_a_state_share_one(forge, mira):
    # happy is an alias of joy, and neutral is the same state at any intensity: one asset each
    labels = ("joy", "happy", "sadness", "neutral")
    planned = plan(forge, Request(("mira",), labels, (0.5, 1.0)))
    assert [(i.label, i.intensity) for i in planned.items] == [
        ("joy", 0.5),
        ("sadness", 0.5),
        ("neutral", 0.5),
        ("joy", 1.0),
        ("sadness", 1.0),
    ]
    assert len(set(planned.jobs)) == 5
    again = plan(forge, Request(("mira",), labels, (0.5, 1.0)))
    assert again.jobs == planned.jobs  # re-planning reuses the rows
    assert len(forge.jobs()) == 5
    dry = plan(forge, Request(("mira",), ("anger",), (1.0,)), dry_run=True)
    assert len(dry.items) == 1 and dry.items[0].job is None and len(forge.jobs()) == 5


@pytest.mark.slow
def test_regenerate_renders_each_asset_once_and_a_rerun_renders_nothing(forge, mira, monkeypatch):
    request = Request(("mira",), ("joy", "sadness", "anger", "neutral"), (0.5, 1.0))
    first = regenerate(forge, request, batch=3)
    assert first.summary.rendered == 7 and first.summary.failed == 0  # neutral at any intensity is the base CG
    assert len(mira.store.assets("cg")) == 7
    check_store(forge, first.plan.jobs)
    for item in first.plan.items:  # the stored picture is the one `feel` serves for that label
        assert mira.feel(label_state(item.label, item.intensity), record=False).key == item.key

    forbid_model(monkeypatch)
    second = regenerate(forge, request, batch=3)
    assert second.summary.rendered == 0 and all(i.cached for i in second.plan.items) and not second.plan.todo


@pytest.mark.slow
def test_a_failing_batch_marks_its_jobs_failed_and_a_rerun_retries_them(forge, mira, monkeypatch):
    import charforge.character.feel as feel_module

    real = feel_module.render_edits

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(feel_module, "render_edits", broken)
    request = Request(("mira",), ("joy", "fear"), (1.0,))
    failed = regenerate(forge, request)
    assert failed.summary.failed == 2 and "out of memory" in failed.summary.errors[0]
    assert {j.status for j in forge.repository.jobs.many(failed.plan.jobs)} == {"failed"}
    monkeypatch.setattr(feel_module, "render_edits", real)
    retried = regenerate(forge, request)
    assert retried.plan.jobs == failed.plan.jobs and retried.summary.rendered == 2
    check_store(forge, retried.plan.jobs)


def test_regenerate_cli_dry_run_and_bad_input(forge, mira, cli):
    ws = ["--workspace", forge.workspace.root, *db_args(forge)]
    code, out, err = cli("regenerate", "mira", "--emotions", "joy,anger", "--dry-run", "--json", *ws)
    assert code == 0, err
    data = json.loads(out)
    assert data["assets"] == 2 and data["to_render"] == 2 and forge.jobs() == []
    code, out, err = cli("regenerate", "mira", "--emotions", "joy", "--intensities", "0.5", *ws)
    assert code == 0, err
    assert "mira" in out and len(mira.store.assets("cg")) == 1
    for args, needle in [
        (("mira", "--all"), "either"),
        (("mira", "--emotions", "joy", "--set", "plutchik"), "not both"),
        (("mira", "--intensities", "1.5"), "intensities"),
        (("mira", "--intensities", "a,b"), "intensities"),
        (("mira", "--set", "klingon"), "klingon"),
        (("mira", "--backend", "slurm"), "slurm"),
        (("Mira!",), "invalid character name"),
    ]:
        code, _, err = cli("regenerate", *args, *ws)
        assert code == 2 and needle in err and err.count("\n") == 1, (args, err)


def test_label_sets():
    assert len(SILLYTAVERN) == 28 and label_set("plutchik")[-1] == "neutral"
    with pytest.raises(InvalidInput, match="unknown label set"):
        label_set("emoji")


@pytest.mark.slow
def test_regenerate_with_bgm_makes_one_loop_per_mood_plan(forge, mira, tiny_bgm_model_dir):
    mira.update(settings={**mira.settings, "music": {"model": str(tiny_bgm_model_dir)}})
    request = Request(("mira",), ("joy", "sadness"), (1.0,), bgm=True, bgm_options={"seconds": 6.0, "steps": 2})
    result = regenerate(forge, request)
    kinds = sorted(i.kind for i in result.plan.items)
    assert kinds == ["bgm", "bgm", "cg", "cg"] and result.summary.failed == 0
    music = mira.store.assets("bgm")
    assert len(music) == 2 and all(a.params["loop"] for a in music)
    check_store(forge, result.plan.jobs)
    assert regenerate(forge, request).summary.rendered == 0
