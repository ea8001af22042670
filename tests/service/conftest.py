"""A workspace with Mira on the tiny model (music on the tiny BGM model), and a shared `charforge serve` over a copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("requests")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from service.svc_server import serve  # noqa: E402

PROMPT = "portrait of a girl with red hair, blue eyes, green outfit, white background"


@pytest.fixture(scope="session")
def cast_template(tmp_path_factory, tiny_model_dir, tiny_bgm_model_dir):
    from charforge.character.identity import build_identity
    from charforge.forge import Forge

    root = tmp_path_factory.mktemp("service-cast") / "ws"
    with Forge.open(root) as forge:
        mira = forge.create("mira", prompt=PROMPT, seed=7, model=str(tiny_model_dir), build_identity=False,
                            settings={"music": {"model": str(tiny_bgm_model_dir)}})  # fmt: skip
        build_identity(mira, {"steps": 2})
    return root


@pytest.fixture
def workspace(tmp_path, cast_template) -> Path:
    shutil.copytree(cast_template, tmp_path / "ws")
    return tmp_path / "ws"


@pytest.fixture(scope="module")
def server(tmp_path_factory, cast_template):
    """One server shared by a module's tests that need no special flags (starting one costs seconds)."""
    root = tmp_path_factory.mktemp("shared-server")
    shutil.copytree(cast_template, root / "ws")
    with serve(root / "ws", log_dir=root) as running:
        yield running
