"""`charforge db`: inspect and migrate the workspace database schema."""

from __future__ import annotations

from typing import Annotated

import typer

from charforge.cli.options import JsonOpt, WorkspaceOpt, YesOpt, confirm
from charforge.cli.workspace import echo_json, workspace_at
from charforge.errors import InvalidInput
from charforge.store import Database

app = typer.Typer(help="Inspect and migrate the workspace database schema.", no_args_is_help=True)


def _report_revision(db: Database, json_out: bool) -> None:
    current, head = db.current_revision(), Database.head_revision()
    db.close()
    if json_out:
        echo_json({"database": str(db.path), "current": current, "head": head})
    else:
        typer.echo(f"schema at {current or 'base (empty)'} (newest: {head})")


@app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(metavar="REVISION", help="Target revision.")] = "head",
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Migrate the schema forward (to the newest revision by default)."""
    db = Database(workspace_at(ctx).db_path)
    db.upgrade(revision)
    _report_revision(db, json_out)


@app.command("downgrade")
def db_downgrade(
    ctx: typer.Context,
    revision: Annotated[
        str | None, typer.Argument(metavar="REVISION", help="Target revision, e.g. 0001 or base.")
    ] = None,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Migrate the schema back to REVISION ('base' removes every table: asks first, or needs --yes)."""
    if revision is None:
        raise InvalidInput("db downgrade needs a target revision, e.g. 0001 or base")
    db_path = workspace_at(ctx).db_path
    if revision == "base":
        confirm(f"downgrading {db_path} to base drops every table and all its data", yes)
    db = Database(db_path)
    db.downgrade(revision)
    _report_revision(db, json_out)


@app.command("current")
def db_current(ctx: typer.Context, json_out: JsonOpt = False, workspace: WorkspaceOpt = None) -> None:
    """Print the schema revision of the workspace database."""
    _report_revision(Database(workspace_at(ctx).db_path), json_out)
