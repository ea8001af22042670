"""The `--workspace` option shared by every command, and opening the workspace it names.

It is accepted both before the command (`charforge --workspace DIR list`) and after it
(`charforge list --workspace DIR`); the latter wins when both are given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from charforge.forge import Forge
from charforge.paths import Workspace

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace folder (default: $CHARFORGE_HOME, else ./.charforge).",
        show_default=False,
        file_okay=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")]


def chosen_workspace(ctx: typer.Context, workspace: Path | None) -> Workspace:
    """The workspace named on this command, else on the root command, else the default."""
    if workspace is None:
        root_obj = ctx.find_root().obj
        if isinstance(root_obj, dict):
            workspace = root_obj.get("workspace")
    return Workspace(workspace)


def open_forge(ctx: typer.Context, workspace: Path | None) -> Forge:
    return Forge.open(chosen_workspace(ctx, workspace).root)


def echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
