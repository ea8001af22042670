"""`charforge demo`: the README's main job (import the sample cast, render its sweep and music)."""

from __future__ import annotations

from typing import Annotated

import typer

from charforge.cli.options import DeviceOpt, JsonOpt, ModelOpt, WorkspaceOpt, use_device
from charforge.cli.workspace import echo_json, open_forge

app = typer.Typer()


@app.command()
def demo(
    ctx: typer.Context,
    model: ModelOpt = None,
    steps: Annotated[int, typer.Option("--steps", min=1, max=200, help="Denoising steps.")] = 20,
    music: Annotated[
        bool, typer.Option("--music/--no-music", help="Also write each character's BGM for two moods.")
    ] = True,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Import the sample cast and render its emotion sweep (calm, each emotion at 0.3/0.6/1.0, mixtures) as a sheet."""
    use_device(device)
    from charforge.demo import run_demo

    with open_forge(ctx, create=True) as forge:
        result = run_demo(forge, model_ref=model, steps=steps, music=music)
    if json_out:
        echo_json({"sheet": str(result.sheet), "imported": result.imported, "characters": result.characters,
                   "skipped": result.skipped, "music": [str(p) for p in result.music]})  # fmt: skip
    else:
        for name in result.skipped:
            typer.echo(f"skipped {name}: the workspace has its own character of that name (left untouched)")
        typer.echo(f"cast: {', '.join(result.characters)}")
        typer.echo(f"contact sheet: {result.sheet}")
        if result.music:
            typer.echo(f"music: {result.music[0].parent} ({len(result.music)} files)")
