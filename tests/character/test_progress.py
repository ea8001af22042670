"""The library's long calls show their progress when asked, and stay quiet otherwise (issue #19 item 7).

Bars are drawn on a terminal only (charforge.progress), so these tests present the captured stderr as one.
"""

from __future__ import annotations

import pytest

from charforge import EmotionState, Forge

PROMPT = "portrait of a girl with red hair, blue eyes, green outfit, white background, looking calm"


@pytest.fixture(autouse=True)
def terminal(monkeypatch):
    """charforge.progress reads sys.stderr when a bar starts: make whatever stream is there a terminal."""
    monkeypatch.setattr("charforge.progress.on_terminal", lambda stream: True)


@pytest.mark.slow
def test_create_and_feel_show_their_steps_only_when_asked(tmp_path, tiny_model_dir, capsys):
    from charforge.character.identity import build_identity

    with Forge.open(tmp_path / "ws", identity_builder=build_identity) as forge:
        quiet = forge.create("ivy", prompt=PROMPT, seed=3, model=str(tiny_model_dir), build_options={"steps": 3})
        assert "denoising" not in capsys.readouterr().err
        forge.create("mira", prompt=PROMPT, seed=7, model=str(tiny_model_dir), build_options={"steps": 3},
                     progress=True)  # fmt: skip
        assert "denoising" in capsys.readouterr().err  # the base CG's render and inversion

        quiet.feel(joy=0.8, record=False)
        assert "denoising" not in capsys.readouterr().err
        shown = quiet.feel(joy=0.5, record=False, progress=True)
        assert not shown.cached and "denoising" in capsys.readouterr().err


@pytest.mark.slow
def test_music_shows_its_tiles_only_when_asked(tmp_path, tiny_bgm_model_dir, capsys):
    with Forge.open(tmp_path / "ws") as forge:
        mira = forge.create("mira", prompt=PROMPT, seed=5, build_identity=False,
                            settings={"music": {"model": str(tiny_bgm_model_dir)}})  # fmt: skip
        mira.bgm(EmotionState(joy=0.9), seconds=3.0, steps=2)
        assert "BGM" not in capsys.readouterr().err
        mira.bgm(EmotionState(sadness=0.9), seconds=3.0, steps=2, progress=True)
        assert "BGM tiles" in capsys.readouterr().err
