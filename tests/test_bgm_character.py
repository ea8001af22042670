"""A character's music: cached per mood plan, level follows arousal, and `charforge bgm` in both forms.

A tiny random BGM-shaped model stands in for charforge-mini-bgm: these tests are about plumbing
(keys, caching, files, errors); what the music sounds like is measured on the trained model by
`charforge eval bgm-mini` and tests/test_bgm_mini.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from charforge.audio.levels import DEFAULT_PEAK
from charforge.character.bgm import character_plan
from charforge.errors import InvalidInput

SECONDS = 3.0


@pytest.fixture()
def forge(forge, tiny_bgm_model_dir):
    """The shared empty workspace, plus Mira scored by the tiny BGM-shaped model."""
    forge.create("mira", prompt="portrait of a girl", seed=5, build_identity=False,
                 settings={"music": {"model": str(tiny_bgm_model_dir)}})
    return forge


def test_bgm_is_rendered_once_per_plan_and_cached(forge):
    mira = forge.get("mira")
    first = mira.bgm({"joy": 0.9}, seconds=SECONDS, steps=2)
    assert not first.cached and first.path.is_file() and first.path.suffix == ".wav"
    samples, rate = sf.read(first.path)
    assert abs(samples.size / rate - SECONDS) < 0.05 and first.plan.mode == "major"
    again = mira.bgm({"joy": 0.9}, seconds=SECONDS, steps=2)
    assert again.cached and again.path == first.path
    # a slightly different state with the same plan (same words, tempo, level) shares the file
    near = mira.bgm({"joy": 0.9, "surprise": 0.01}, seconds=SECONDS, steps=2)
    assert near.plan == first.plan and near.cached and near.path == first.path
    sad = mira.bgm({"sadness": 0.9}, seconds=SECONDS, steps=2)
    assert not sad.cached and sad.path != first.path and sad.plan.mode == "minor"
    assert len(mira.assets("bgm")) == 2


def test_current_state_is_the_default_and_calm_music_is_quieter(forge):
    mira = forge.get("mira")
    mira.record_emotion({"sadness": 1.0})
    calm = mira.bgm(seconds=SECONDS, steps=2)
    assert calm.plan == character_plan(mira, {"sadness": 1.0})
    samples, _ = sf.read(calm.path)
    limit = DEFAULT_PEAK * 10 ** (calm.plan.loudness_db / 20)
    assert calm.plan.loudness_db < -3 and np.max(np.abs(samples)) <= limit + 1e-3


def test_character_overrides_change_the_music(forge):
    mira = forge.get("mira")
    base = character_plan(mira, {"joy": 0.8})
    mira.update(settings={**mira.settings, "music": {**mira.settings["music"], "lead": "pad", "arousal_offset": -0.6}})
    tuned = character_plan(mira, {"joy": 0.8})
    assert "pad" in tuned.prompt and tuned.bpm < base.bpm


def test_bad_arguments_raise_before_rendering(forge):
    mira = forge.get("mira")
    for kwargs in ({"seconds": 0}, {"seconds": 10_000}, {"seed": -1}, {"steps": 0}):
        with pytest.raises(InvalidInput):
            mira.bgm({"joy": 0.5}, **{"seconds": SECONDS, **kwargs})
    assert mira.assets("bgm") == []


def test_cli_character_and_mood_forms(tmp_path, forge, tiny_bgm_model_dir, cli):
    ws = str(forge.workspace.root)
    forge.get("mira").record_emotion({"anger": 0.9})
    out = tmp_path / "mira.wav"
    code, stdout, err = cli("bgm", "mira", "--seconds", str(SECONDS), "--steps", "1", "--out", str(out), "-w", ws, "--json")
    assert code == 0, err
    assert json.loads(stdout)["plan"]["mode"] == "minor" and out.is_file() and sf.read(out)[0].size > 0
    free = tmp_path / "free.wav"
    code, stdout, err = cli("bgm", "--valence", "0.7", "--arousal", "-0.5", "--seconds", "2", "--steps", "1",
                            "--model", str(tiny_bgm_model_dir), "--out", str(free), "--json")
    assert code == 0, err
    samples, rate = sf.read(free)
    assert abs(samples.size / rate - 2.0) < 0.05 and json.loads(stdout)["plan"]["mode"] == "major"


@pytest.mark.parametrize("args", [
    ["bgm"],                                                            # neither a name nor a mood
    ["bgm", "--valence", "0.5", "--arousal", "0.5"],                    # no --out without a character
    ["bgm", "--valence", "1.5", "--arousal", "0", "--out", "x.wav"],    # out of range
    ["bgm", "mira", "--out", "x.mp3"],                                  # unsupported format
    ["bgm", "mira", "--valence", "0.2"],                                # mood comes from the state
    ["bgm", "../etc", "--seconds", "2"],                                # not a character name
    ["bgm", "mira", "--seconds", "-1"],
])
def test_cli_bad_input_is_one_line_exit_2(forge, args, tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    code, stdout, err = cli(*args, "--workspace", str(forge.workspace.root))
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error:") and stdout == ""
    assert forge.get("mira").assets("bgm") == []


def test_transition_is_one_cached_file_from_one_mood_to_the_other(forge, cli):
    mira = forge.get("mira")
    mira.record_emotion({"sadness": 0.9})
    glide = mira.bgm_transition({"joy": 0.9}, segments=2, steps=2)
    assert glide.plan.mode == "minor" and glide.plan_to.mode == "major" and not glide.cached
    samples, rate = sf.read(glide.path)
    assert samples.size / rate > 2 * 5.0  # two spectrogram tiles, one file
    code, stdout, err = cli("bgm", "mira", "--to", "joy=0.9", "--segments", "2", "--steps", "2",
                            "-w", str(forge.workspace.root), "--json")
    assert code == 0, err
    data = json.loads(stdout)
    assert data["cached"] and data["path"] == str(glide.path) and data["plan_to"]["mode"] == "major"
