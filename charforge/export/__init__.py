"""Sprite packs for the engines people load characters into: SillyTavern, Ren'Py, Godot, a plain folder.

    export_pack(forge, ["mira"], "renpy", "out/")   # pictures (and music) per expression label

Pictures come from the character's state cache (missing ones are rendered, in batches); each format
module only lays the stored bytes out the way its consumer expects (see `registry.FORMATS`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charforge.emotion.labels import check_labels, label_set
from charforge.export.pack import Format, Pack, collect, prepare_out
from charforge.export.registry import FORMATS, get_format

if TYPE_CHECKING:
    from charforge.forge import Forge

__all__ = ["FORMATS", "ExportResult", "Format", "Pack", "collect", "export_pack", "get_format"]


@dataclass(frozen=True)
class ExportResult:
    format: str
    out: Path
    packs: tuple[Pack, ...]
    files: tuple[Path, ...]

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "out": str(self.out),
            "characters": [p.name for p in self.packs],
            "labels": {p.name: [s.label for s in p.sprites] for p in self.packs},
            "files": [str(f) for f in self.files],
        }


def export_pack(
    forge: Forge,
    names: Sequence[str] | None,
    fmt: str,
    out: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    intensity: float = 1.0,
    music: bool | None = None,
    music_options: Mapping[str, Any] | None = None,
) -> ExportResult:
    """Write the packs of `names` (None: every character) in format `fmt` under `out`.

    `labels` default to the format's label set; `music` defaults to whether the format carries BGM.
    Everything is validated and gathered before the first file is written.
    """
    chosen = get_format(fmt)
    wanted = check_labels(labels) if labels is not None else label_set(chosen.default_set)
    characters = forge.list() if names is None else [forge.get(name) for name in names]
    with_music = chosen.music if music is None else music
    packs = tuple(
        collect(c, wanted, intensity=intensity, music=with_music, music_options=music_options) for c in characters
    )
    target = prepare_out(out)
    files = [path for pack in packs for path in chosen.write(pack, target)]
    return ExportResult(chosen.name, target, packs, tuple(files))
