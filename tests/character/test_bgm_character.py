"""A character's music: cached per mood plan, at one loudness, loop-tagged, and `charforge bgm` in both forms.

A tiny random BGM-shaped model stands in for charforge-mini-bgm: these tests are about plumbing
(keys, caching, files, errors); what the music sounds like is measured on the trained model by
`charforge eval bgm-mini` and tests/test_bgm_mini.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from charforge.audio.audiofile import read_loop, sidecar_path
from charforge.audio.loudness import integrated_loudness, true_peak_dbtp
from charforge.character.bgm import character_plan
from charforge.errors import InvalidInput

SECONDS = 3.0


@pytest.fixture()
def forge(forge, tiny_bgm_model_dir):
    """The shared empty workspace, plus Mira scored by the tiny BGM-shaped model."""
    forge.create("mira", prompt="portrait of a girl", seed=5, build_identity=False,
                 settings={"music": {"model": str(tiny_bgm_model_dir)}})
    return forge


@pytest.mark.slow
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
    assert len(mira.store.assets("bgm")) == 2


@pytest.mark.slow
def test_current_state_is_the_default_and_every_mood_leaves_at_the_loudness_target(forge):
    mira = forge.get("mira")
    mira.record_emotion({"sadness": 1.0})
    calm = mira.bgm(seconds=SECONDS, steps=2)
    assert calm.plan == character_plan(mira, {"sadness": 1.0})
    excited = mira.bgm({"joy": 1.0, "surprise": 0.8}, seconds=SECONDS, steps=2)
    for result in (calm, excited):
        samples, rate = sf.read(result.path, dtype="float32")
        assert abs(integrated_loudness(samples, rate) - result.plan.loudness_lufs) <= 1.0
        assert true_peak_dbtp(samples, rate) <= result.plan.true_peak_dbtp + 0.1  # 16-bit rounding


@pytest.mark.slow
def test_loudness_target_is_a_setting(forge):
    mira = forge.get("mira")
    mira.update(settings={**mira.settings, "music": {**mira.settings["music"], "loudness_lufs": -23.0}})
    quiet = mira.bgm({"joy": 0.5}, seconds=SECONDS, steps=2)
    samples, rate = sf.read(quiet.path, dtype="float32")
    assert abs(integrated_loudness(samples, rate) + 23.0) <= 1.0


@pytest.mark.slow  # renders a six-second looped ogg
def test_looped_ogg_carries_loop_tags_and_a_seamless_seam(forge, tmp_path, cli):
    mira = forge.get("mira")
    mira.record_emotion({"joy": 0.8})
    looped = mira.bgm(seconds=6.0, steps=2, loop=True, format="ogg")
    assert looped.path.suffix == ".ogg"
    tags = read_loop(looped.path)
    samples, rate = sf.read(looped.path, dtype="float32")
    assert tags == looped.loop and tags.start == 0 and tags.start + tags.length == samples.size
    # played in a loop, the sample after the last one is LOOPSTART's: that jump is an ordinary step
    steps = np.abs(np.diff(samples))
    seam = abs(float(samples[tags.start + tags.length - 1]) - float(samples[tags.start]))
    assert seam <= np.percentile(steps, 99)
    # the CLI copies the cached file out, with the sample-accurate loop in a JSON sidecar
    out = tmp_path / "theme.ogg"
    code, _, err = cli("bgm", "mira", "--seconds", "6", "--steps", "2", "--loop", "--out", str(out),
                       "-w", str(forge.workspace.root), "--json")
    assert code == 0, err
    side = json.loads(sidecar_path(out).read_text())
    assert side["loop"] == {"start": 0, "length": tags.length, "end": tags.length} and side["samples"] == samples.size
    assert read_loop(out) == tags


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
    assert mira.store.assets("bgm") == []


@pytest.mark.slow
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
    ["bgm", "mira", "--format", "mp3"],
    ["bgm", "mira", "--format", "ogg", "--out", "x.wav"],               # format and suffix disagree
    ["bgm", "mira", "--valence", "0.2"],                                # mood comes from the state
    ["bgm", "../etc", "--seconds", "2"],                                # not a character name
    ["bgm", "mira", "--seconds", "-1"],
])
def test_cli_bad_input_is_one_line_exit_2(forge, args, tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    code, stdout, err = cli(*args, "--workspace", str(forge.workspace.root))
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error:") and stdout == ""
    assert forge.get("mira").store.assets("bgm") == []


@pytest.mark.slow
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
