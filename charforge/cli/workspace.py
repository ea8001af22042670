"""Opening the workspace a command names, under the rule that only creating commands may create one.

`init`, `create`, `import` and `demo` make the workspace when it is missing; every other command
says "no workspace at PATH" instead, so a mistyped `--workspace` never leaves an empty one behind.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from charforge.cli.options import chosen_workspace
from charforge.errors import NotFound
from charforge.forge import Forge
from charforge.paths import Workspace, validate_slug


def workspace_at(ctx: typer.Context, *, create: bool = False) -> Workspace:
    """The chosen workspace; NotFound when it has no database and `create` is False."""
    ws = Workspace(chosen_workspace(ctx))
    if not create and not ws.db_path.is_file():
        raise NotFound(f"no workspace at {ws.root} (create it with `charforge init`, or pass --workspace DIR)")
    return ws


def open_forge(ctx: typer.Context, *, create: bool = False) -> Forge:
    return Forge.open(workspace_at(ctx, create=create).root)


def get_character(forge: Forge, name: str) -> Any:
    """The character `name`, or NotFound naming the workspace that was searched."""
    validate_slug(name)
    if not forge.exists(name):
        raise NotFound(f"no character named {name!r} in the workspace at {forge.workspace.root}")
    return forge.get(name)


def echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
