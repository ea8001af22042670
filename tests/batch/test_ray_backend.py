"""`regenerate --backend ray` on a local Ray instance: the same job rows and store code as the local backend."""

from __future__ import annotations

import pytest
from helpers.characters import make_character

from charforge.jobs import Request, regenerate

ray = pytest.importorskip("ray", reason="the optional `ray` extra is not installed")


@pytest.mark.slow  # starts a Ray instance and two actor processes
def test_ray_actors_render_each_planned_asset_once(forge, tiny_model_dir):
    mira = make_character(forge, tiny_model_dir)
    request = Request(("mira",), ("joy", "sadness", "anger", "fear", "neutral"), (0.5, 1.0))
    result = regenerate(forge, request, backend="ray", workers=2, batch=2)
    assert result.summary.failed == 0 and result.summary.rendered == 9  # neutral is one asset at any intensity
    jobs = forge.repository.jobs.many(result.plan.jobs)
    assert all(j.status == "done" for j in jobs)
    assert len({j.worker for j in jobs if j.result["rendered"]}) >= 1
    assets = mira.store.assets("cg")
    assert len(assets) == 9 and len({a.state_hash for a in assets}) == 9
    assert {j.key for j in jobs} == {a.state_hash for a in assets}
    again = regenerate(forge, request, backend="ray", workers=2)
    assert again.summary.rendered == 0 and not again.plan.todo
