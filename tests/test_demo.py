"""The README's main job, on the tiny random model (the shipped model is exercised by the mini-model tests)."""

from __future__ import annotations

import json

from PIL import Image
from typer.testing import CliRunner

from charforge.cli.main import _register_commands, app
from charforge.demo import cast_dir, run_demo, sweep_states
from charforge.forge import Forge
from charforge.cards import load_cards


def test_demo_imports_cast_and_renders_sheet_once(tmp_path, tiny_model_dir):
    cast = [card.name for _, card in load_cards(cast_dir())]
    assert len(cast) >= 3
    with Forge.open(tmp_path / "ws") as forge:
        first = run_demo(forge, model_ref=str(tiny_model_dir), steps=2)
        assert sorted(first.imported) == sorted(cast)
        sheet = Image.open(first.sheet)
        assert sheet.height >= 128 * len(cast)  # one row per character
        assert sheet.width >= 128 * len(sweep_states())  # base + 8 emotions x 2 intensities per row
        assets = {c.name: c.assets("cg") for c in forge.list()}
        assert all(len(a) == len(sweep_states()) for a in assets.values())
        # Second run: nothing new imported, the cached pictures are reused (no new assets).
        second = run_demo(forge, model_ref=str(tiny_model_dir), steps=2)
        assert second.imported == []
        assert {c.name: [x.path for x in c.assets("cg")] for c in forge.list()} == {
            n: [x.path for x in a] for n, a in assets.items()
        }


def test_demo_cli_json(tmp_path, tiny_model_dir):
    _register_commands()
    result = CliRunner().invoke(
        app, ["demo", "--workspace", str(tmp_path / "ws"), "--model", str(tiny_model_dir), "--steps", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    sheet = (tmp_path / "ws").resolve() / "demo" / "contact-sheet.png"
    assert out["sheet"] == str(sheet) and sheet.is_file()
    assert len(out["characters"]) >= 3
