"""One atomic writer for every file charforge writes: all or nothing, and permissions from the umask."""

from __future__ import annotations

import os
import stat

import numpy as np
import PIL.Image
import pytest

from charforge.audio.audiofile import write_audio
from charforge.engine.outputs import save_png
from charforge.files import atomic_write
from charforge.paths import Workspace


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_get_the_permissions_the_umask_allows(tmp_path, umask, mask, expected):
    umask(mask)
    path = atomic_write(tmp_path / "a.bin", b"abc")
    assert path.read_bytes() == b"abc" and mode(path) == expected


def test_every_writer_goes_through_it(tmp_path, umask):
    """The four places that used to call mkstemp (0600 files) now create 0644 files under umask 022."""
    umask(0o022)
    written = [
        Workspace(tmp_path / "ws").write_atomic("assets/x.bin", b"x"),
        save_png(PIL.Image.new("RGB", (4, 4)), tmp_path / "a.png"),
        write_audio(tmp_path / "a.wav", np.zeros(800, dtype=np.float32), 8000),
        write_audio(tmp_path / "a.ogg", np.zeros(8000, dtype=np.float32), 8000),
    ]
    assert [mode(p) for p in written] == [0o644] * len(written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ogg", "a.png", "a.wav", "ws"]  # no temp files left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    target = atomic_write(tmp_path / "state.json", b"old")

    def half_then_fail(stream):
        stream.write(b"new but incomplete")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_writer_function_and_replacing_a_file(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write(target, b"first")
    atomic_write(target, lambda stream: stream.write(b"second"))
    assert target.read_bytes() == b"second"
