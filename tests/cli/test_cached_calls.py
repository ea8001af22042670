"""A state drawn (or scored) before is answered from the cache without importing torch (issue #19 item 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from charforge.character.cache import cached_picture
from charforge.emotion import EmotionState

pytestmark = pytest.mark.slow  # renders, then probes a fresh interpreter per command

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "portrait of a girl with red hair, blue eyes, green outfit, white background, looking calm"

PROBE = """
import contextlib, io, json, sys
from charforge.cli.main import main
sys.argv = ["charforge", *json.loads(sys.argv[1])]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main()
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "out": out.getvalue(), "torch": "torch" in sys.modules}))
"""


def in_a_fresh_process(workspace: Path, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = json.dumps([*args, "--json", "-w", str(workspace)])
    done = subprocess.run([sys.executable, "-c", PROBE, argv], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout)


def test_a_cached_emote_does_not_import_torch(forge, tiny_model_dir):
    from charforge.character.identity import build_identity

    mira = forge.create("mira", prompt=PROMPT, seed=7, model=str(tiny_model_dir), build_identity=False)
    build_identity(mira, {"steps": 3})
    drawn = mira.feel(joy=0.8, record=False)
    assert not drawn.cached

    hit = cached_picture(mira, EmotionState.from_mapping({"happy": 0.81}))  # alias, same quantised state
    assert hit is not None and hit.cached and hit.path == drawn.path and hit.key == drawn.key
    assert cached_picture(mira, EmotionState.from_mapping({"joy": 0.3})) is None

    result = in_a_fresh_process(forge.workspace.root, "emote", "mira", "joy=0.8")
    assert result["code"] == 0 and not result["torch"]
    data = json.loads(result["out"])
    assert data["cached"] and data["path"] == str(drawn.path) and data["hash"] == drawn.key

    explained = in_a_fresh_process(forge.workspace.root, "explain", "mira", "joy=0.8")  # renders nothing
    assert explained["code"] == 0 and not explained["torch"]
    expected = json.loads(json.dumps(mira.explain({"joy": 0.8}).to_dict()))
    out = json.loads(explained["out"])
    assert out["requested"] == {"joy": 0.8} and {k: out[k] for k in expected} == expected
    assert forge.get("mira").current_state().components() == {"joy": 0.8}  # recorded as before


def test_cached_music_does_not_import_torch(forge, tiny_bgm_model_dir):
    mira = forge.create("mira", prompt=PROMPT, seed=5, build_identity=False,
                        settings={"music": {"model": str(tiny_bgm_model_dir)}})  # fmt: skip
    mira.record_emotion(EmotionState.from_mapping({"joy": 0.9}))
    scored = mira.bgm(seconds=3.0, steps=2)
    assert not scored.cached

    result = in_a_fresh_process(forge.workspace.root, "bgm", "mira", "--seconds", "3", "--steps", "2")
    assert result["code"] == 0 and not result["torch"]
    data = json.loads(result["out"])
    assert data["cached"] and data["path"] == str(scored.path)
