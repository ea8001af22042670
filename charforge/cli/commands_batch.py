"""Batch commands: `export` (sprite packs for engines) and `regenerate` (every asset again, resumable).

Arguments are validated before the workspace is opened or a model is loaded, so bad input exits 2
with one stderr line and changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charforge.cli.main import app
from charforge.cli.workspace import JsonOpt, WorkspaceOpt, echo_json, open_forge
from charforge.emotion.labels import label_set, parse_labels
from charforge.errors import InvalidInput
from charforge.paths import validate_slug

NamesArg = Annotated[list[str] | None, typer.Argument(metavar="[NAMES]...", help="Characters (or --all).")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every character of the workspace.")]
EmotionsOpt = Annotated[str | None, typer.Option("--emotions", help="Labels, e.g. joy,sadness,admiration.")]
SetOpt = Annotated[str | None, typer.Option("--set", help="A label set: sillytavern or plutchik.")]


def _names(names: list[str] | None, every: bool) -> list[str] | None:
    """Named characters, or None for --all."""
    if bool(names) == every:
        raise InvalidInput("name the characters or pass --all (either one, not both)")
    return None if every else [validate_slug(n) for n in dict.fromkeys(names or [])]


def _labels(emotions: str | None, set_name: str | None) -> tuple[str, ...] | None:
    if emotions is not None and set_name is not None:
        raise InvalidInput("give --emotions or --set, not both")
    if emotions is not None:
        return parse_labels(emotions)
    return None if set_name is None else label_set(set_name)


def _intensity(value: float) -> float:
    if not 0.0 < value <= 1.0:
        raise InvalidInput(f"intensity must be in (0, 1], got {value}")
    return value


@app.command()
def export(
    ctx: typer.Context,
    names: NamesArg = None,
    every: AllOpt = False,
    fmt: Annotated[str, typer.Option("--format", help="sillytavern, renpy, godot or folder.")] = "folder",
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (its parent must exist).")] = None,
    emotions: EmotionsOpt = None,
    set_name: SetOpt = None,
    intensity: Annotated[float, typer.Option("--intensity", help="Intensity of each label, (0, 1].")] = 1.0,
    music: Annotated[bool | None, typer.Option("--bgm/--no-bgm", help="Include music (default: if the format has it).")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write sprite packs: one picture per expression label, laid out for SillyTavern, Ren'Py, Godot or a folder."""
    from charforge.export import export_pack, get_format

    chosen = _names(names, every)
    get_format(fmt)
    labels = _labels(emotions, set_name)
    _intensity(intensity)
    if out is None:
        raise InvalidInput("export needs --out DIR")
    with open_forge(ctx, workspace) as forge:
        result = export_pack(forge, chosen, fmt, out, labels=labels, intensity=intensity, music=music)
    if json_out:
        echo_json(result.to_dict())
        return
    for pack in result.packs:
        typer.echo(f"{pack.name}: {len(pack.sprites)} sprites" + (f", {len(pack.tracks)} tracks" if pack.tracks else ""))
    typer.echo(f"{len(result.files)} files written to {result.out} ({result.format})")
