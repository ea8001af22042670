"""The README's Python quick start runs as a new user would: from any directory, and twice (issue #19 item 1)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from charforge import Forge
from charforge.errors import AlreadyExists
from charforge.models import default_bgm_model_path, default_model_path, weights_hash

ROOT = Path(__file__).resolve().parents[2]


def readme_quick_start() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start (Python)", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_quick_start_runs_from_any_directory_twice(tmp_path):
    script = tmp_path / "quick_start.py"
    script.write_text(readme_quick_start(), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for run in (1, 2):
        done = subprocess.run(
            [sys.executable, str(script)], cwd=elsewhere, capture_output=True, text=True, env=env, timeout=300
        )
        assert done.returncode == 0, f"run {run} failed:\n{done.stderr[-2000:]}"
        assert (elsewhere / "mira.png").is_file()
        assert done.stdout.count("mira ") == 1  # forge.list(): one Mira, the same one both times


def test_create_exist_ok_returns_the_same_character(tmp_path):
    with Forge.open(tmp_path / "ws") as forge:
        first = forge.create("mira", prompt="portrait of a girl", seed=7, build_identity=False)
        again = forge.create("mira", prompt="portrait of a girl", seed=7, build_identity=False, exist_ok=True)
        assert again == first and len(forge.list()) == 1
        with pytest.raises(AlreadyExists):
            forge.create("mira", prompt="portrait of a girl", seed=7, build_identity=False)
        with pytest.raises(AlreadyExists, match="prompt, seed"):  # another definition is never silently kept
            forge.create("mira", prompt="portrait of a boy", seed=8, build_identity=False, exist_ok=True)
        assert forge.get("mira").prompt == "portrait of a girl"


def test_the_shipped_models_have_names():
    assert weights_hash("charforge-mini") == weights_hash(None) == weights_hash(default_model_path())
    assert weights_hash("charforge-mini-bgm") == weights_hash(default_bgm_model_path()) != weights_hash(None)
