"""The sprite formats by name. A new format is one module with a `FORMAT` plus one line here."""

from __future__ import annotations

from charforge.errors import InvalidInput
from charforge.export import folder, godot, renpy, sillytavern
from charforge.export.pack import Format

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        sillytavern.FORMAT,
        renpy.FORMAT,
        godot.FORMAT,
        folder.FORMAT,
    )
}


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise InvalidInput(f"unknown export format {name!r} (choose from {', '.join(FORMATS)})")
    return FORMATS[name]
