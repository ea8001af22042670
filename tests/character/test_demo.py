"""The README's main job, on the tiny random model (the shipped model is exercised by the mini-model tests)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from charforge.cards import load_cards
from charforge.demo import MUSIC_SECONDS, cast_dir, run_demo, sweep_states
from charforge.forge import Forge

pytestmark = pytest.mark.slow  # renders the whole sample cast's sweep (dozens of CGs) and its music


def test_demo_imports_cast_and_renders_sheet_once(tmp_path, tiny_model_dir, tiny_bgm_model_dir):
    cast = [card.name for _, card in load_cards(cast_dir())]
    assert len(cast) >= 3
    with Forge.open(tmp_path / "ws") as forge:
        first = run_demo(forge, model_ref=str(tiny_model_dir), steps=2, bgm_model=str(tiny_bgm_model_dir))
        assert sorted(first.imported) == sorted(cast)
        sheet = Image.open(first.sheet)
        assert sheet.height >= 128 * len(cast)  # one row per character
        assert sheet.width >= 128 * len(sweep_states())  # base + 8 emotions x 3 intensities + mixtures per row
        assets = {c.name: c.store.assets("cg") for c in forge.list()}
        assert all(len(a) == len(sweep_states()) for a in assets.values())
        # each character's music for the two contrasting moods: two different, playable files
        assert len(first.music) == 2 * len(cast)
        for name in cast:
            joy, sad = (sf.read(p)[0] for p in first.music if p.name.startswith(f"{name}-"))
            assert joy.size == sad.size >= 0.9 * MUSIC_SECONDS * sf.info(first.music[0]).samplerate
            assert not np.array_equal(joy, sad)
        # Second run: nothing new imported, the cached pictures and music are reused (no new assets).
        second = run_demo(forge, model_ref=str(tiny_model_dir), steps=2, bgm_model=str(tiny_bgm_model_dir))
        assert second.imported == []
        assert {c.name: [x.path for x in c.store.assets()] for c in forge.list()} == {
            c.name: [x.path for x in a] for c, a in ((c, assets[c.name] + c.store.assets("bgm")) for c in forge.list())
        }


def test_demo_cli_json(tmp_path, tiny_model_dir, cli):
    code, stdout, err = cli("demo", "--workspace", tmp_path / "ws", "--model", tiny_model_dir, "--steps", "1",
                            "--no-music", "--json")  # fmt: skip
    assert code == 0, err
    out = json.loads(stdout)
    sheet = (tmp_path / "ws").resolve() / "demo" / "contact-sheet.png"
    assert out["sheet"] == str(sheet) and sheet.is_file()
    assert len(out["characters"]) >= 3 and out["music"] == []
