"""A plain folder for anything else: <label>.png per expression plus `index.json` describing each file.

`index.json` maps label -> file, the emotion state it shows, the file's sha256 and the model it was
drawn with, so another tool can check and load the pack without knowing charforge.
"""

from __future__ import annotations

import json
from pathlib import Path

from charforge.export.pack import Format, Pack, write_file, write_text

INDEX_VERSION = 1


def write(pack: Pack, out: Path) -> list[Path]:
    folder = out / pack.name
    written: list[Path] = []
    sprites: dict[str, dict] = {}
    for sprite in pack.sprites:
        name = f"{sprite.label}.png"
        written.append(write_file(folder / name, sprite.picture.read_bytes()))
        sprites[sprite.label] = {
            "file": name,
            "state": sprite.state.components(),
            "sha256": sprite.picture.sha256,
            "model": sprite.picture.params.get("model_hash", pack.model_hash),
            "state_hash": sprite.picture.state_hash,
        }
    music: dict[str, dict] = {}
    for track in pack.tracks:
        name = f"music/{track.label}{track.audio.relpath.suffix}"
        written.append(write_file(folder / name, track.audio.read_bytes()))
        music[track.label] = {"file": name, "sha256": track.audio.sha256, "plan": track.plan,
                              "model": track.audio.params.get("model_hash")}  # fmt: skip
    index = {"version": INDEX_VERSION, "character": pack.name, "display_name": pack.display_name,
             "sprites": sprites, "music": music}  # fmt: skip
    written.append(write_text(folder / "index.json", json.dumps(index, indent=2, ensure_ascii=False) + "\n"))
    return written


FORMAT = Format(
    name="folder",
    description="<name>/<label>.png plus index.json (label -> file, state, sha256, model)",
    default_set="plutchik",
    music=False,
    write=write,
)
