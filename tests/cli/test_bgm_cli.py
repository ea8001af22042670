"""`charforge bgm` options: several EMOTION=F after --to, --seconds never silently dropped, mode and tempo said.

The character's music verbs are replaced by recorders here: these tests are about what the command
line asks for and prints; the music itself is tested in the BGM tests.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from charforge import Character
from charforge.audio.mood import plan_for_state
from charforge.emotion import EmotionState


@pytest.fixture
def ws(tmp_path, cli):
    assert cli("create", "mira", "--prompt", "a girl", "--seed", "7", "--no-render", "-w", tmp_path / "ws")[0] == 0
    return tmp_path / "ws"


@pytest.fixture
def calls(monkeypatch, tmp_path):
    """Record the arguments of Character.bgm / bgm_transition and answer with a small real WAV file."""
    from charforge.audio.audiofile import write_audio

    wav = write_audio(tmp_path / "piece.wav", np.zeros(800, dtype=np.float32), 8000)
    seen: list[tuple[str, tuple, dict]] = []

    def result(plan, plan_to=None):
        data = {"path": str(wav), "plan": plan.to_dict(), "seconds": 0.1, "cached": False}
        return SimpleNamespace(path=wav, plan=plan, plan_to=plan_to, seconds=0.1, cached=False, sample_rate=8000,
                               loop=None, to_dict=lambda: data)

    def bgm(self, *args, **kwargs):
        seen.append(("bgm", args, kwargs))
        return result(plan_for_state(self.current_state()))

    def bgm_transition(self, target, **kwargs):
        seen.append(("transition", (target,), kwargs))
        return result(plan_for_state(self.current_state()), plan_for_state(target))

    monkeypatch.setattr(Character, "bgm", bgm)
    monkeypatch.setattr(Character, "bgm_transition", bgm_transition)
    return seen


def test_to_takes_several_emotions(ws, cli, calls):
    code, out, err = cli("bgm", "mira", "--to", "joy=0.9", "fear=0.2", "--segments", "3", "-w", ws)
    assert code == 0, err
    ((kind, (target,), options),) = calls
    assert kind == "transition" and options["segments"] == 3
    assert target == EmotionState.from_mapping({"joy": 0.9, "fear": 0.2})
    start, end = plan_for_state(EmotionState()), plan_for_state(target)
    first = out.splitlines()[0]
    for plan in (start, end):  # the mode and tempo of both ends are said
        assert f"({plan.mode}, ~{plan.bpm:.0f} bpm)" in first


def test_the_readme_form_with_options_after_to(ws, cli, calls, tmp_path):
    out_file = tmp_path / "glide.wav"
    code, out, err = cli("bgm", "mira", "--to", "joy=0.9", "--segments", "4", "--out", out_file, "-w", ws)
    assert code == 0, err
    assert calls[0][1][0] == EmotionState.from_mapping({"joy": 0.9})
    assert out_file.read_bytes() == (tmp_path / "piece.wav").read_bytes() and out.splitlines()[-1] == str(out_file)


def test_seconds_is_passed_through_without_to(ws, cli, calls):
    code, out, _ = cli("bgm", "mira", "--seconds", "16", "--loop", "-w", ws)
    assert code == 0
    ((kind, _, options),) = calls
    assert kind == "bgm" and options["seconds"] == 16.0 and options["loop"] is True
    plan = plan_for_state(EmotionState())
    assert f"({plan.mode}, ~{plan.bpm:.0f} bpm)" in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--to", "joy=0.9", "fear=0.2", "--seconds", "20"], "--seconds does not apply to a transition"),
        (["--to", "joy=0.9", "--loop"], "--loop does not apply to a transition"),
        (["joy=0.9"], "needs --to"),
        (["--to"], "--to needs at least one EMOTION=INTENSITY"),
        (["--to", "joy=2"], "within [0, 1]"),
    ],
)
def test_options_that_cannot_apply_are_refused(ws, cli, calls, args, fragment):
    code, out, err = cli("bgm", "mira", *args, "-w", ws)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and fragment in err, err
    assert calls == []


def test_music_for_a_bare_mood_says_its_mode_and_tempo(cli, monkeypatch, tmp_path):
    import charforge.character.bgm as bgm_module

    plan = plan_for_state(EmotionState.from_mapping({"joy": 0.8}))
    clip = SimpleNamespace(samples=np.zeros(8000, dtype=np.float32), sample_rate=8000, loop=None)
    monkeypatch.setattr(bgm_module, "bgm_for_mood", lambda *a, **k: (plan, clip))
    code, out, err = cli("bgm", "--valence", "0.5", "--arousal", "0.2", "--out", tmp_path / "a.wav")
    assert code == 0, err
    assert f"({plan.mode}, ~{plan.bpm:.0f} bpm), 1.0 s -> {tmp_path / 'a.wav'}" in out
    assert (tmp_path / "a.wav").is_file()
