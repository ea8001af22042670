"""A state drawn before is answered by `Character.feel` from the cache without torch (issue #19 item 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # renders, then probes a fresh interpreter

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "portrait of a girl with red hair, blue eyes, green outfit, white background, looking calm"

PROBE = """
import json, sys
from charforge import Forge
with Forge.open(sys.argv[1]) as forge:
    mira = forge.get("mira")
    result = mira.feel(happy=0.81)  # an alias of the same quantised state
    state = forge.get("mira").current_state().components()
print(json.dumps({"path": str(result.path), "key": result.key, "cached": result.cached, "state": state,
                  "torch": "torch" in sys.modules, "diffusers": "diffusers" in sys.modules}))
"""


def test_a_cached_feel_does_not_import_torch(forge, tiny_model_dir):
    from charforge.character.identity import build_identity

    mira = forge.create("mira", prompt=PROMPT, seed=7, model=str(tiny_model_dir), build_identity=False)
    build_identity(mira, {"steps": 3})
    drawn = mira.feel(joy=0.8, record=False)
    assert not drawn.cached and forge.get("mira").current_state().is_neutral

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE, str(forge.workspace.root)], capture_output=True, text=True,
                          env=env, check=True)  # fmt: skip
    out = json.loads(done.stdout)
    assert out["cached"] and out["path"] == str(drawn.path) and out["key"] == drawn.key
    assert not out["torch"] and not out["diffusers"]
    assert out["state"] == {"joy": 0.81}  # the state asked for is recorded, as an uncached feel does

    again = forge.get("mira").feel(joy=0.3, record=False)  # not drawn yet: rendered (the cache is no shortcut)
    assert not again.cached and again.key != drawn.key
