"""Sprite packs on the tiny model: each format's structure is what its consumer loads.

The checks read the written files back independently of the writers: file names against the labels,
the `.rpy` against a parser of the statements it claims, the `.tres` against Godot's text resource
grammar, `index.json` against the files' own sha256.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile

import numpy as np
import PIL.Image
import pytest
import soundfile as sf
from helpers.characters import face_mask, forbid_model

from charforge.character.identity import build_identity
from charforge.emotion.labels import PLUTCHIK, SILLYTAVERN, label_state
from charforge.errors import InvalidInput
from charforge.export import export_pack

PROMPT = "portrait of a girl with red hair, blue eyes, green outfit, white background, looking calm"


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cast(forge_copy, tiny_model_dir, tiny_bgm_model_dir):
    """Two characters on the tiny model, with identities and face masks; music from the tiny BGM model
    (a copy of a workspace built once per session)."""

    def build(forge):
        for name, display in (("mira", "Mira"), ("ren-2", "Ren: the 2nd")):
            character = forge.create(name, prompt=PROMPT, seed=7, model=str(tiny_model_dir), display_name=display,
                                     build_identity=False, settings={"music": {"model": str(tiny_bgm_model_dir)}})
            build_identity(character, {"steps": 3})
            size = character.store.get_identity("base_image").tensors["pixels"].shape[0]
            character.set_mask("face", face_mask(size))

    return forge_copy("export-cast", build)


@pytest.mark.slow
def test_sillytavern_pack_has_one_image_per_label_named_by_it(cast, tmp_path):
    result = export_pack(cast, ["mira"], "sillytavern", tmp_path / "st")
    folder = tmp_path / "st" / "Mira"  # SillyTavern looks sprites up by the character's name
    assert sorted(p.stem for p in folder.iterdir()) == sorted(SILLYTAVERN)
    assert all(p.suffix == ".png" for p in folder.iterdir())
    with zipfile.ZipFile(tmp_path / "st" / "Mira.zip") as archive:
        names = archive.namelist()
        assert sorted(names) == sorted(f"{label}.png" for label in SILLYTAVERN)
        assert archive.read("joy.png") == (folder / "joy.png").read_bytes()
    # the picture under a label is the character's CG for that label's state
    mira = cast.get("mira")
    joy = mira.feel(label_state("joy"), record=False)
    assert joy.cached and (folder / "joy.png").read_bytes() == joy.asset.read_bytes()
    neutral = np.asarray(PIL.Image.open(folder / "neutral.png").convert("RGB"))
    assert np.array_equal(neutral, mira.store.get_identity("base_image").tensors["pixels"].numpy())
    assert result.to_dict()["labels"]["mira"] == list(SILLYTAVERN)


@pytest.mark.slow
def test_export_of_rendered_states_does_not_run_the_model(cast, tmp_path, monkeypatch):
    export_pack(cast, ["mira"], "folder", tmp_path / "a")

    forbid_model(monkeypatch)
    export_pack(cast, ["mira"], "godot", tmp_path / "b")
    assert (tmp_path / "b" / "mira" / "mira.tres").is_file()


_IMAGE = re.compile(r'image ([-0-9a-zA-Z_]+) ([-0-9a-zA-Z_]+) = "([^"<>]+)"')
_AUDIO = re.compile(r'define audio\.([A-Za-z_][0-9A-Za-z_]*) = "<loop ([0-9.]+)>([^"]+)"')


@pytest.mark.slow
def test_renpy_rpy_parses_as_image_and_audio_statements(cast, tmp_path):
    labels = ["joy", "sadness", "neutral"]
    export_pack(cast, ["ren-2"], "renpy", tmp_path / "game", labels=labels,
                music_options={"seconds": 6.0, "steps": 2})  # fmt: skip
    lines = [ln for ln in (tmp_path / "game" / "ren-2.rpy").read_text().splitlines() if ln and not ln.startswith("#")]
    images = [_IMAGE.fullmatch(ln) for ln in lines if ln.startswith("image ")]
    audio = [_AUDIO.fullmatch(ln) for ln in lines if ln.startswith("define ")]
    assert len(images) + len(audio) == len(lines), "every line is one of the two statements"
    assert all(images) and all(audio)
    assert [(m[1], m[2]) for m in images] == [("ren-2", label) for label in labels]
    for m in images:  # paths are relative to game/, and name the label
        assert (tmp_path / "game" / m[3]).is_file() and m[3].endswith(f"/{m[2]}.png")
    assert [m[1] for m in audio] == [f"ren_2_{label}" for label in labels]
    for m in audio:
        ogg = tmp_path / "game" / m[3]
        info = sf.info(str(ogg))
        assert info.format == "OGG" and info.subtype == "VORBIS" and info.duration > 1.0
        assert 0.0 <= float(m[2]) < info.duration


@pytest.mark.slow
def test_godot_tres_has_the_header_and_one_animation_per_label(cast, tmp_path):
    export_pack(cast, ["mira"], "godot", tmp_path / "g")
    folder = tmp_path / "g" / "mira"
    text = (folder / "mira.tres").read_text()
    header = re.match(r'\[gd_resource type="SpriteFrames" load_steps=(\d+) format=3\]\n', text)
    assert header and int(header[1]) == len(PLUTCHIK) + 1
    textures = {tid: path for path, tid in re.findall(r'\[ext_resource type="Texture2D" path="([^"]+)" id="([^"]+)"\]', text)}
    assert sorted(textures.values()) == sorted(f"{label}.png" for label in PLUTCHIK)
    assert all((folder / path).is_file() for path in textures.values())
    body = text.split("[resource]\n", 1)[1]
    animations = re.findall(r'"texture": ExtResource\("([^"]+)"\)\n\}\],\n"loop": true,\n"name": &"([^"]+)"', body)
    assert [label for _, label in animations] == list(PLUTCHIK)
    # each animation's single frame is the texture of its own label
    assert all(textures[tid] == f"{label}.png" for tid, label in animations)
    assert body.count("[") - body.count("]") == 0 and body.count("{") == body.count("}")


@pytest.mark.slow
def test_folder_index_matches_the_files(cast, tmp_path):
    export_pack(cast, None, "folder", tmp_path / "f", labels=["joy", "anger"], intensity=0.5)
    for name in ("mira", "ren-2"):
        folder = tmp_path / "f" / name
        index = json.loads((folder / "index.json").read_text())
        assert index["character"] == name and sorted(index["sprites"]) == ["anger", "joy"]
        model_hash = cast.get(name).model_hash
        for label, entry in index["sprites"].items():
            assert entry["file"] == f"{label}.png"
            assert sha(folder / entry["file"]) == entry["sha256"]
            assert entry["state"] == label_state(label, 0.5).components() and entry["model"] == model_hash
        assert sorted(p.name for p in folder.iterdir()) == ["anger.png", "index.json", "joy.png"]


def test_bad_requests_fail_before_writing(cast, tmp_path):
    with pytest.raises(InvalidInput, match="unknown export format"):
        export_pack(cast, ["mira"], "unity", tmp_path / "x")
    with pytest.raises(InvalidInput, match="unknown emotion"):
        export_pack(cast, ["mira"], "folder", tmp_path / "x", labels=["joyy"])
    with pytest.raises(InvalidInput, match="does not exist"):
        export_pack(cast, ["mira"], "folder", tmp_path / "no" / "such" / "dir", labels=["joy"])
    assert not (tmp_path / "x").exists()


def test_export_cli(cast, cli, tmp_path):
    ws = cast.workspace.root
    code, out, err = cli("export", "mira", "--format", "folder", "--out", tmp_path / "c", "--emotions", "joy,fear",
                         "--workspace", ws, "--json")  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["labels"] == {"mira": ["joy", "fear"]}
    assert sorted(p.name for p in (tmp_path / "c" / "mira").iterdir()) == ["fear.png", "index.json", "joy.png"]
    code, _, err = cli("export", "mira", "--all", "--format", "folder", "--out", tmp_path / "d", "--workspace", ws)
    assert code == 2 and err.count("\n") == 1 and "either" in err
    code, _, err = cli("export", "mira", "--format", "psd", "--out", tmp_path / "d", "--workspace", ws)
    assert code == 2 and "psd" in err and err.count("\n") == 1
    assert io.StringIO(err).read().startswith("error:")
