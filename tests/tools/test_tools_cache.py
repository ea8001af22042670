"""The cached answer of set_emotion is the picture of the character as it is now: after its identity
changes (from this handle or from another process's), the same emotion is drawn again, never answered
with the old picture."""

from __future__ import annotations

import pytest
import torch

from charforge.forge import Forge
from charforge.store.models import IdentityKind


def ok(outcome):
    assert outcome["ok"], outcome
    return outcome["result"]


def drawn(toolbox, emotions):
    """set_emotion until its picture is cached; returns the cached answer's asset."""
    first = ok(toolbox.call_tool("set_emotion", {"name": "mira", "emotions": emotions}))
    if not first["cached"]:
        assert toolbox.worker.wait_idle(120)
        assert ok(toolbox.call_tool("job_status", {"id": first["job"]["id"]}))["status"] == "done"
    again = ok(toolbox.call_tool("set_emotion", {"name": "mira", "emotions": emotions}))
    assert again["cached"] and again["job"] is None
    return again["asset"]


@pytest.mark.slow
def test_a_new_identity_is_never_answered_with_the_old_picture(toolbox):
    joy = {"joy": 0.8}
    old = drawn(toolbox, joy)
    old_keys = {a.state_hash for a in toolbox.forge.get("mira").store.assets("cg")}

    # another process adds an identity artifact (a user-drawn mask): the key of every state moves
    with Forge.open(toolbox.forge.workspace.root) as other:
        other.get("mira").store.put_identity(IdentityKind.MASK, {"mask": torch.ones(1, 8, 8)}, name="cheek")
    after_mask = ok(toolbox.call_tool("set_emotion", {"name": "mira", "emotions": joy}))
    assert not after_mask["cached"] and after_mask["asset"] is None and after_mask["job"]["status"] == "queued"
    assert toolbox.worker.wait_idle(120)

    # and the prompt changes through this very server's forge
    toolbox.forge.get("mira").update(prompt="portrait of a girl with red hair, blue eyes, red outfit, white background")
    after_prompt = ok(toolbox.call_tool("set_emotion", {"name": "mira", "emotions": joy}))
    assert not after_prompt["cached"] and after_prompt["job"] is not None
    new = drawn(toolbox, joy)

    keys = [a.state_hash for a in toolbox.forge.get("mira").store.assets("cg")]
    assert len(set(keys)) == len(keys) == len(old_keys) + 2  # one new picture per identity, none reused
    assert new["url"] != old["url"]  # the new prompt draws other pixels
