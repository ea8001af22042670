"""Workspace resolution, name validation and the guarantee that writes stay inside the workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from charforge.errors import InvalidInput
from charforge.paths import Workspace, asset_relpath, resolve_workspace, validate_slug


def test_workspace_resolution_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHARFORGE_HOME", raising=False)
    assert resolve_workspace() == tmp_path / ".charforge"
    monkeypatch.setenv("CHARFORGE_HOME", str(tmp_path / "home"))
    assert resolve_workspace() == tmp_path / "home"
    assert resolve_workspace(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_workspace("rel") == tmp_path / "rel"


@pytest.mark.parametrize("name", ["mira", "a", "x-1_b", "0day", "a" * 64])
def test_valid_slugs(name):
    assert validate_slug(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "Mira", "mira!", "a" * 65, "../etc", "..", ".", "a/b", "a\\b", "/abs", "-rf", "_x", "mi ra", "mïra",
     "mira\n", "nul\x00"],
)
def test_invalid_slugs_are_rejected(name):
    with pytest.raises(InvalidInput):
        validate_slug(name)


def test_resolve_refuses_escapes(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    for bad in ["../outside.txt", "assets/../../outside.txt", str(tmp_path / "abs.txt")]:
        with pytest.raises(InvalidInput):
            ws.write_atomic(bad, b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"]


def test_symlink_out_of_the_workspace_is_refused(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    outside = tmp_path / "outside"
    outside.mkdir()
    (ws.assets_dir / "cg").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidInput):
        ws.write_atomic("assets/cg/ab/file.png", b"data")
    assert list(outside.iterdir()) == []


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path, monkeypatch):
    ws = Workspace(tmp_path)
    target = ws.write_atomic("assets/cg/aa/f.png", b"first")
    ws.write_atomic("assets/cg/aa/f.png", b"second")
    assert target.read_bytes() == b"second"

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        ws.write_atomic("assets/cg/aa/f.png", b"third")
    assert target.read_bytes() == b"second"  # the old content survives a failed write
    assert [p.name for p in target.parent.iterdir()] == ["f.png"]


def test_asset_relpath_is_content_addressed_and_validated():
    digest = "ab" + "0" * 62
    assert asset_relpath("cg", digest, ".png").as_posix() == f"assets/cg/ab/{digest}.png"
    for kind, sha, suffix in [("cg", "../x", ".png"), ("cg", digest, "/x"), ("../cg", digest, ".png"), ("cg", digest, "png")]:
        with pytest.raises(InvalidInput):
            asset_relpath(kind, sha, suffix)


def test_workspace_that_is_a_file_is_rejected(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InvalidInput):
        Workspace(f).ensure()
    assert Path(f).read_text() == "x"
