"""Fixtures of the reliability tests: a workspace with a character drawn by the tiny model."""

from __future__ import annotations

import shutil

import pytest
from helpers.reliability import PROMPT


@pytest.fixture
def drawn(tmp_path, _drawn_template):
    """A workspace with `mira` (tiny model, 2-step identity, masks from attention: influence masks are
    most of a tiny identity build, and every `reinvert` here rebuilds it) and her neutral and joy CGs (a
    copy of one drawn once per session: tests here damage their workspace, never the template)."""
    shutil.copytree(_drawn_template, tmp_path / "ws")
    return tmp_path / "ws"


@pytest.fixture(scope="session")
def _drawn_template(tmp_path_factory, tiny_model_dir):
    from charforge.character.identity import build_identity
    from charforge.forge import Forge

    ws = tmp_path_factory.mktemp("drawn") / "ws"
    with Forge.open(ws, identity_builder=build_identity) as forge:
        mira = forge.create("mira", prompt=PROMPT, seed=7, model=str(tiny_model_dir),
                            settings={"identity": {"steps": 2, "mask_method": "attention"}})  # fmt: skip
        mira.feel(record=False)
        mira.feel(joy=0.8, record=False)
    return ws
