"""Class 4 of issue #12: every unbounded or malformed input is one clear error (CLI: one stderr line,
exit 2) found before anything is written, and the workspace is left byte-for-byte as it was.

On the old code: a 335-byte YAML alias bomb became a 39 MB settings row; deep nesting raised
RecursionError; a non-UTF-8 card, a 50000x50000 image header, a corrupt database each printed a
traceback; `settings.identity.steps=100000`, `settings.music="loud"` and an unreadable model were
accepted at import and failed only when rendering; NaN guidance reached the sampler.
"""

from __future__ import annotations

import math
import os
import struct
import zlib

import pytest
from helpers.reliability import dump
from PIL import Image

from charforge.errors import CharforgeError, InvalidInput

BILLION_LAUGHS = (
    "name: mira\nprompt: portrait of a girl\nsettings:\n  a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"  {chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
              f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(7))
)  # fmt: skip

CARDS = {
    "bomb.yaml": BILLION_LAUGHS,
    "deep.yaml": "name: mira\nprompt: p\nsettings: " + "[" * 5000 + "]" * 5000 + "\n",
    "deep-map.yaml": "name: mira\nprompt: p\nsettings:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 60)),
    "deep.toml": 'name = "mira"\nprompt = "p"\nsettings = {x = ' + "[" * 3000 + "]" * 3000 + "}\n",
    "deep-tables.toml": 'name = "mira"\nprompt = "p"\n[settings.' + ".".join(["a"] * 40) + "]\nx = 1\n",
    "huge.toml": 'name = "mira"\nprompt = "p"\nnegative_prompt = "' + "x" * 70000 + '"\n',
    "steps.toml": 'name = "mira"\nprompt = "p"\n[settings.identity]\nsteps = 100000\n',
    "music.toml": 'name = "mira"\nprompt = "p"\n[settings]\nmusic = "loud"\n',
    "unknown-setting.toml": 'name = "mira"\nprompt = "p"\n[settings]\nmusik = {}\n',
    "nan.toml": 'name = "mira"\nprompt = "p"\n[settings.identity]\nguidance = nan\n',
    "model.toml": 'name = "mira"\nprompt = "p"\nmodel = "/nonexistent/model"\n',
    "pickle-model.yaml": "name: mira\nprompt: p\nmodel: weights.ckpt\n",
    "tag.yaml": "name: mira\nprompt: !!python/object/apply:os.system [echo hi]\n",
    "int-key.yaml": "name: mira\nprompt: p\n1: x\n",
    "list.yaml": "- name: mira\n",
}


@pytest.fixture
def ws(cli, tmp_path):
    ws = tmp_path / "ws"
    assert cli("create", "keep", "--prompt", "portrait of a boy", "--no-render", "-w", ws)[0] == 0
    return ws


def one_line_error(result) -> str:
    code, out, err = result
    assert code == 2, (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("name", sorted(CARDS))
def test_bad_cards_are_refused_at_import_and_change_nothing(cli, ws, tmp_path, name):
    folder = tmp_path / "cards"
    folder.mkdir()
    (folder / name).write_text(CARDS[name])
    before = dump(ws)
    one_line_error(cli("import", folder, "-w", ws))
    assert dump(ws) == before


def test_a_non_utf8_card_is_one_line(cli, ws, tmp_path):
    folder = tmp_path / "cards"
    folder.mkdir()
    (folder / "latin1.toml").write_bytes('name = "mira"\nprompt = "caf\xe9"\n'.encode("latin-1"))
    before = dump(ws)
    assert "UTF-8" in one_line_error(cli("import", folder, "-w", ws))
    assert dump(ws) == before


def test_settings_given_to_the_library_are_bounded_too(forge):
    with pytest.raises(InvalidInput, match="levels deep"):
        nested: dict = {}
        for _ in range(200):
            nested = {"x": nested}
        forge.create("mira", prompt="p", settings={"music": nested})
    with pytest.raises(InvalidInput, match="steps"):
        forge.create("mira", prompt="p", settings={"identity": {"steps": 100000}})
    with pytest.raises(InvalidInput):
        forge.create("mira", prompt="p", settings={"identity": {"guidance": math.nan}})
    with pytest.raises(CharforgeError, match="not found"):
        forge.create("mira", prompt="p", model="/nonexistent/model")
    assert forge.list() == []


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` (and whose data is tiny)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("picture", ["bomb", "tiny", "garbage"])
def test_pictures_are_checked_before_decoding(cli, ws, tmp_path, picture):
    path = tmp_path / "mask.png"
    if picture == "bomb":
        path.write_bytes(png_claiming(50000, 50000))
    elif picture == "tiny":
        Image.new("L", (1, 1)).save(path)
    else:
        path.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    before = dump(ws)
    generate = ["generate", "--prompt", "p", "--image", path, "--out", tmp_path / "o.png"]
    for args in (["mask", "keep", "face", "--from", path], generate):
        err = one_line_error(cli(*args, "-w", ws))
        assert "pixels" in err or "readable" in err
    assert dump(ws) == before


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["create", "x", "--prompt", "p", "--seed", str(2**70), "--no-render"], "seed"),
        (["bgm", "keep", "joy=0.5", "--seed", str(2**70)], "seed"),
        (["create", "x", "--prompt", "p", "--device", "bogus"], "device"),
        (["generate", "--prompt", "p", "--guidance", "nan", "--out", "o.png"], "finite"),
        (["generate", "--prompt", "p", "--guidance", "inf", "--out", "o.png"], "finite"),
        (["invert", "in.png", "--prompt", "p", "--guidance", "nan"], "finite"),
        (["emote", "keep", "joy=nan"], "NaN"),
        (["emote", "keep", "joy=1e999"], "joy"),
        (["set", "keep", "--model", "/nonexistent/model"], "not found"),
        (["set", "keep", "--model", "weights.ckpt"], "pickle"),
    ],
)
def test_out_of_range_arguments_are_one_line_and_change_nothing(cli, ws, args, says):
    before = dump(ws)
    assert says in one_line_error(cli(*args, "-w", ws))
    assert dump(ws) == before


def test_out_naming_a_directory_is_one_line(cli, ws, tmp_path):
    folder = tmp_path / "already.png"
    folder.mkdir()
    one_line_error(cli("generate", "p", "--out", folder, "-w", ws))


@pytest.mark.parametrize(
    "content",
    [b"this is not a database at all" * 100, os.urandom(8192), b"SQLite format 3\0" + b"\xff" * 4000],
    ids=["text", "random", "damaged-header"],
)
def test_a_corrupt_database_is_one_line_and_left_as_is(cli, tmp_path, content):
    ws = tmp_path / "ws"
    (ws / "assets").mkdir(parents=True)
    (ws / "charforge.db").write_bytes(content)
    for args in (["list"], ["show", "mira"], ["create", "x", "--prompt", "p", "--no-render"], ["db", "current"]):
        one_line_error(cli(*args, "-w", ws))
    assert (ws / "charforge.db").read_bytes() == content


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_workspace_is_one_line(cli, ws):
    before = dump(ws)
    os.chmod(ws / "charforge.db", 0o444)
    os.chmod(ws, 0o555)
    try:
        for args in (["emote", "keep", "joy=0.5", "--no-render"], ["create", "y", "--prompt", "p", "--no-render"]):
            one_line_error(cli(*args, "-w", ws))
    finally:
        os.chmod(ws, 0o755)
        os.chmod(ws / "charforge.db", 0o644)
    assert dump(ws) == before


def test_non_finite_numbers_are_refused_by_the_library(tiny_model):
    import torch

    from charforge.emotion import EmotionState
    from charforge.engine import txt2img
    from charforge.engine.inversion import invert_latent

    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(InvalidInput):
            txt2img(tiny_model, "a girl", steps=1, guidance=bad)
        with pytest.raises(InvalidInput):
            invert_latent(tiny_model, torch.zeros(1, 4, 16, 16), "a girl", steps=1, guidance=bad)
        with pytest.raises(InvalidInput):
            EmotionState(joy=bad)
