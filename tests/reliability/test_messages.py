"""Class 5 of issue #12: "one line on stderr" holds also when the failure logged first (a failed
identity build), when PIL warns while reading a picture, and when a progress bar was drawing.

On the old code a failed create printed the builder's log line before the error, PIL's warnings went
to stderr as Python warnings, and tqdm bars were left on stderr by a command that then failed.
"""

from __future__ import annotations

import io
import logging
import shutil
import sys

import pytest
from helpers.reliability import charforge_process
from PIL import Image

from charforge.progress import progress


def test_a_failed_identity_build_is_one_line(cli, tmp_path, tiny_model_dir):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.write_bytes(b"garbage")
    code, _, err = cli("create", "mira", "--prompt", "portrait of a girl", "--model", broken, "-w", tmp_path / "ws")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err


def test_warnings_logged_before_a_failure_are_not_printed(cli, tmp_path, monkeypatch):
    """Whatever a command logs before failing, the user sees the one error line."""
    from charforge.forge import Forge

    real_open = Forge.open

    def noisy_open(*args, **kwargs):
        logging.getLogger("charforge.test").warning("something went sideways first")
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Forge, "open", noisy_open)
    code, _, err = cli("show", "nobody", "-w", tmp_path / "ws")
    assert code == 2 and err.count("\n") == 1 and "sideways" not in err, err
    assert cli("init", "-w", tmp_path / "ws")[0] == 0  # and after a success the warning is shown, once
    code, _, err = cli("list", "-w", tmp_path / "ws")
    assert code == 0 and err == "warning: something went sideways first\n"


@pytest.mark.slow  # a fresh `charforge` process
def test_a_pil_warning_while_reading_a_picture_is_not_a_second_line(cli, tmp_path):
    picture = Image.new("P", (32, 32))
    picture.putpalette([0, 0, 0, 255, 255, 255] * 128)
    path = tmp_path / "palette.png"
    picture.save(path, transparency=b"\x00\x80\xff")  # palette transparency as bytes: PIL warns on convert
    with pytest.warns(UserWarning):
        Image.open(path).convert("L")  # what `mask --from` does
    ws = tmp_path / "ws"
    assert cli("create", "keep", "--prompt", "portrait of a boy", "--no-render", "-w", ws)[0] == 0
    # A real process: pytest would otherwise catch the warning before it reaches stderr.
    proc = charforge_process("mask", "keep", "face", "--from", path, "-w", ws)  # fails: keep has no identity
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and err.startswith("error: ") and err.count("\n") == 1, err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def visible_last_line(text: str) -> str:
    """What a terminal shows on the last line after carriage returns overwrite it."""
    shown = ""
    for part in text.split("\n")[-1].split("\r"):
        shown = part + shown[len(part):]
    return shown.strip()


def test_progress_bars_are_erased_when_the_work_under_them_fails(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with pytest.raises(RuntimeError):
        for index in progress(range(100), desc="working"):
            if index == 50:
                raise RuntimeError("boom")
    assert "working" in terminal.getvalue()  # it was drawn on the terminal...
    assert visible_last_line(terminal.getvalue()) == ""  # ...and nothing of it is left


def test_progress_bars_draw_nothing_off_a_terminal(monkeypatch):
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    assert list(progress(range(5), desc="working")) == list(range(5))
    assert pipe.getvalue() == ""
