"""A Ren'Py folder: sprites, an `.rpy` of `image` statements, and the BGM as Ogg with a loop point.

Targets Ren'Py 8 (checked against the 8.x documentation of the image statement and of partial
playback, and its lexer's rules for image names). Copy the folder's contents into the game's `game/`
folder: `<tag>.rpy` then declares `image <tag> <label> = "<tag>/<label>.png"` for every expression
(so `show mira joy` works), and `define audio.<tag>_<label> = "<loop S><tag>/music/<label>.ogg"` for
its music, `<loop S>` being Ren'Py's own loop-point syntax (`play music mira_joy`).
"""

from __future__ import annotations

import re
from pathlib import Path

from charforge.errors import InvalidInput
from charforge.export.music import ogg_loop
from charforge.export.pack import Format, Pack, write_file, write_text

# Ren'Py image name components (renpy/lexer.py: image_word_regexp), minus the words its parser refuses.
_IMAGE_WORD = re.compile(r"[-0-9a-zA-Z_]+")
_RESERVED = {"as", "if", "in", "return", "with", "while", "behind", "at", "onlayer", "zorder", "transform"}


def image_word(word: str) -> str:
    if not _IMAGE_WORD.fullmatch(word) or word in _RESERVED:
        raise InvalidInput(f"{word!r} cannot be part of a Ren'Py image name")
    return word


def audio_name(tag: str, label: str) -> str:
    """A Python identifier for the audio namespace (no '-', not starting with a digit)."""
    name = f"{tag}_{label}".replace("-", "_")
    return name if name[0].isalpha() or name[0] == "_" else f"c_{name}"


def write(pack: Pack, out: Path) -> list[Path]:
    tag = image_word(pack.name)
    written: list[Path] = []
    lines = [
        f"# {pack.display_name}: sprites and music exported by charforge for Ren'Py 8.",
        "# Copy this folder's contents into your game/ folder.",
        "",
    ]
    for sprite in pack.sprites:
        rel = f"{tag}/{sprite.label}.png"
        written.append(write_file(out / rel, sprite.picture.read_bytes()))
        lines.append(f'image {tag} {image_word(sprite.label)} = "{rel}"')
    if pack.tracks:
        lines.append("")
    for track in pack.tracks:
        music = ogg_loop(track)
        rel = f"{tag}/music/{track.label}.ogg"
        written.append(write_file(out / rel, music.data))
        lines.append(f'define audio.{audio_name(tag, track.label)} = "<loop {music.loop_start_seconds:.3f}>{rel}"')
    written.append(write_text(out / f"{tag}.rpy", "\n".join(lines) + "\n"))
    return written


FORMAT = Format(
    name="renpy",
    description="Ren'Py 8: <tag>.rpy with image statements, <tag>/<label>.png, looping Ogg BGM per label",
    default_set="plutchik",
    music=True,
    write=write,
)
