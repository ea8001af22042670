"""Batch commands: `export` (sprite packs for engines) and `regenerate` (every asset again, resumable).

Arguments are validated before the workspace is opened or a model is loaded, so bad input exits 2
with one stderr line and changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from charforge.cli.options import JsonOpt, WorkspaceOpt, chosen_workspace
from charforge.cli.workspace import echo_json, workspace_at
from charforge.emotion.labels import label_set, parse_labels
from charforge.errors import InvalidInput, NotFound
from charforge.paths import Workspace, validate_slug

app = typer.Typer()

NamesArg = Annotated[list[str] | None, typer.Argument(metavar="[NAMES]...", help="Characters (or --all).")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every character of the workspace.")]
EmotionsOpt = Annotated[str | None, typer.Option("--emotions", help="Labels, e.g. joy,sadness,admiration.")]
SetOpt = Annotated[str | None, typer.Option("--set", help="A label set: sillytavern or plutchik.")]
DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Database URL, e.g. postgresql+psycopg://user@host/db (default: $CHARFORGE_DB, "
                 "else the workspace's SQLite file).", show_default=False),
]  # fmt: skip


def _open(ctx: typer.Context, db: str | None):  # type: ignore[no-untyped-def]
    """The workspace: its SQLite file must exist, or with a database URL its asset folder."""
    from charforge.forge import ENV_DB, Forge

    url = db or os.environ.get(ENV_DB) or None
    if url is None:
        return Forge.open(workspace_at(ctx).root)
    root = Workspace(chosen_workspace(ctx)).root
    if not root.is_dir():
        raise NotFound(f"no workspace folder at {root} (pass --workspace DIR)")
    return Forge.open(root, db_url=url)


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
    music: Annotated[
        bool | None, typer.Option("--bgm/--no-bgm", help="Include music (default: if the format has it).")
    ] = None,
    workspace: WorkspaceOpt = None,
    db: DbOpt = None,
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
    with _open(ctx, db) as forge:
        result = export_pack(forge, chosen, fmt, out, labels=labels, intensity=intensity, music=music)
    if json_out:
        echo_json(result.to_dict())
        return
    for pack in result.packs:
        tracks = f", {len(pack.tracks)} tracks" if pack.tracks else ""
        typer.echo(f"{pack.name}: {len(pack.sprites)} sprites{tracks}")
    typer.echo(f"{len(result.files)} files written to {result.out} ({result.format})")


@app.command()
def regenerate(
    ctx: typer.Context,
    names: NamesArg = None,
    every: AllOpt = False,
    emotions: EmotionsOpt = None,
    set_name: SetOpt = None,
    intensities: Annotated[str, typer.Option("--intensities", help="Comma-separated, e.g. 0.5,1.0.")] = "1.0",
    bgm: Annotated[bool, typer.Option("--bgm", help="Also each state's loopable music.")] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Worker processes / Ray actors.")] = 1,
    batch: Annotated[int | None, typer.Option("--batch", min=1, max=64, help="States per UNet call.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="local or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster address (default: start one here).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; render and record nothing.")] = False,
    workspace: WorkspaceOpt = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Render every requested sprite (and BGM) again, one job per asset: resumable, skips what is stored."""
    from charforge.jobs import BACKENDS, DEFAULT_BATCH, Request, parse_intensities, plan, regenerate

    chosen = _names(names, every)
    labels = _labels(emotions, set_name) or label_set("plutchik")
    request = Request(None if chosen is None else tuple(chosen), labels, parse_intensities(intensities), bgm)
    if backend not in BACKENDS:
        raise InvalidInput(f"unknown --backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if address is not None and backend != "ray":
        raise InvalidInput("--address only applies to --backend ray")
    with _open(ctx, db) as forge:
        if dry_run:
            planned = plan(forge, request, dry_run=True)
            _print_plan(planned, json_out)
            return
        with _Progress(enabled=not json_out) as progress:
            result = regenerate(forge, request, backend=backend, workers=workers, batch=batch or DEFAULT_BATCH,
                                address=address, on_plan=progress.start, on_result=progress.result,
                                on_progress=progress.update)  # fmt: skip
    data = result.to_dict()
    if json_out:
        echo_json(data)
    else:
        _print_summary(data)
    if data["failed"]:
        raise typer.Exit(code=1)


def _print_plan(planned, json_out: bool) -> None:  # type: ignore[no-untyped-def]
    data = planned.to_dict()
    if json_out:
        echo_json(data)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="regeneration plan (dry run)")
    for column in ("character", "asset", "label", "intensity", "status"):
        table.add_column(column)
    for item in planned.items:
        status = "stored" if item.cached else "to render" if item.key else "to render (identity first)"
        table.add_row(item.character, item.kind, item.label, f"{item.intensity:g}", status)
    Console().print(table)
    typer.echo(f"{data['assets']} assets: {data['cached']} stored, {data['to_render']} to render")


def _print_summary(data: dict) -> None:  # type: ignore[type-arg]
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"regenerated in {data['seconds']:.1f} s")
    for column in ("character", "stored", "rendered", "reused", "failed", "open"):
        table.add_column(column, justify="right" if column != "character" else "left")
    for name, row in data["characters"].items():
        table.add_row(name, *(str(row[k]) for k in ("cached", "rendered", "reused", "failed", "open")))
    Console().print(table)
    for error in dict.fromkeys(data["errors"]):
        typer.echo(f"error: {error}", err=True)


class _Progress:
    """A rich progress bar with ETA over the jobs of the run (fed by results or by polling the rows)."""

    def __init__(self, *, enabled: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeRemainingColumn(), disable=not enabled)  # fmt: skip
        self._task = None
        self._done = 0

    def __enter__(self) -> _Progress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)

    def start(self, planned) -> None:  # type: ignore[no-untyped-def]
        self._task = self._bar.add_task("regenerate", total=len(planned.todo))

    def result(self, job, result, error) -> None:  # type: ignore[no-untyped-def]
        self._done += 1
        self.update(self._done)

    def update(self, done: int) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=done)
