"""A workspace with Mira on the tiny random model, her identity built (2 steps), and a toolbox with a worker.

The identity is built once per session and the workspace folder copied for each test: building it
costs seconds on a shared CPU, copying a few hundred kilobytes does not.
"""

from __future__ import annotations

import shutil

import pytest

PROMPT = "portrait of a girl with red hair, blue eyes, green outfit, white background"


@pytest.fixture(scope="session")
def cast_template(tmp_path_factory, tiny_model_dir):
    from charforge.character.identity import build_identity
    from charforge.forge import Forge

    root = tmp_path_factory.mktemp("cast") / "ws"
    with Forge.open(root) as forge:
        mira = forge.create("mira", prompt=PROMPT, seed=7, model=str(tiny_model_dir), build_identity=False)
        build_identity(mira, {"steps": 2})
    return root


@pytest.fixture
def cast(tmp_path, cast_template):
    from charforge.forge import Forge

    shutil.copytree(cast_template, tmp_path / "ws")
    with Forge.open(tmp_path / "ws") as forge:
        yield forge


@pytest.fixture
def toolbox(cast):
    from charforge.tools import Toolbox
    from charforge.tools.worker import Worker

    worker = Worker(cast).start()
    box = Toolbox(cast, worker=worker)
    yield box
    worker.stop()
