"""Store commands: init, create, list, show, rename, delete, import, and `db` migrations (emote: commands_feel).

Validation happens before anything is opened or written, so a bad argument exits 2 with one line on
stderr (via charforge.cli.main) and leaves the workspace as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from charforge.cards import CharacterCard, load_cards
from charforge.cli.main import app
from charforge.cli.workspace import JsonOpt, WorkspaceOpt, chosen_workspace, echo_json, open_forge
from charforge.errors import InvalidInput, NotFound
from charforge.paths import validate_slug
from charforge.store import Database

console = Console(soft_wrap=True)  # long prompts and paths stay on one line
db_app = typer.Typer(help="Inspect and migrate the workspace database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

HISTORY_SHOWN = 10


@app.callback()
def _root(ctx: typer.Context, workspace: WorkspaceOpt = None) -> None:
    """Keep a character's CG and BGM in step with how it feels."""
    ctx.obj = {"workspace": workspace}


def _state_text(state: dict[str, float] | None) -> str:
    if not state:
        return "neutral"
    return " ".join(f"{k}={v:g}" for k, v in state.items())


@app.command()
def init(ctx: typer.Context, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Create the workspace (or bring an existing one to the newest schema)."""
    with open_forge(ctx, workspace) as forge:
        info = {
            "workspace": str(forge.workspace.root),
            "database": str(forge.workspace.db_path),
            "revision": forge.db.current_revision(),
        }
    if json_out:
        echo_json(info)
    else:
        typer.echo(f"workspace ready at {info['workspace']} (schema {info['revision']})")


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name: lowercase letters, digits, '-' and '_'.")],
    prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="Base prompt describing the character.")] = None,
    negative: Annotated[str, typer.Option("--negative", help="Negative prompt.")] = "",
    seed: Annotated[int | None, typer.Option("--seed", help="Seed (default: derived from the name).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model reference (default: charforge-mini).")] = None,
    display_name: Annotated[str | None, typer.Option("--display-name", help="Name shown to people.")] = None,
    no_render: Annotated[bool, typer.Option("--no-render", help="Store the definition only; build the identity later.")] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a character: render its base CG, invert it and store the identity (unless --no-render)."""
    if prompt is None:
        raise InvalidInput("create needs --prompt TEXT describing the character")
    card = CharacterCard.build(
        name=name, prompt=prompt, negative_prompt=negative, seed=seed, model=model, display_name=display_name
    )
    with open_forge(ctx, workspace) as forge:
        if not no_render:
            from charforge.character.identity import build_identity

            forge.identity_builder = build_identity
        character = forge.create_from_card(card, build_identity=not no_render)
        data = character.to_dict()
        if not no_render:
            data["base_cg"] = str(character.feel(record=False).path)
    if json_out:
        echo_json(data)
    else:
        typer.echo(f"created {data['name']} (seed {data['seed']})")
        if "base_cg" in data:
            typer.echo(f"base CG: {data['base_cg']}")


@app.command("list")
def list_characters(ctx: typer.Context, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """List the characters of the workspace."""
    with open_forge(ctx, workspace) as forge:
        rows = [c.to_dict() for c in forge.list()]
    if json_out:
        echo_json(rows)
        return
    if not rows:
        typer.echo("no characters yet: try `charforge create NAME --prompt TEXT` or `charforge import characters/`")
        return
    table = Table("name", "display name", "seed", "model", "state", "version")
    for r in rows:
        table.add_row(r["name"], r["display_name"], str(r["seed"]), r["model"] or "default",
                      _state_text(r["current_state"]), str(r["version"]))
    console.print(table)


@app.command()
def show(ctx: typer.Context, name: str, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Show one character: definition, identity artifacts, recent emotions and assets."""
    validate_slug(name)
    with open_forge(ctx, workspace) as forge:
        character = forge.get(name)
        data = character.to_dict()
        data["identity"] = [a.to_dict() for a in character.identity()]
        data["history"] = {
            "count": character.history_count(),
            "recent": [e.to_dict() for e in character.history(limit=HISTORY_SHOWN)],
        }
        data["assets"] = [a.to_dict() for a in character.assets()]
    if json_out:
        echo_json(data)
        return
    model = data["model"] or "default"
    lines = {
        "name": data["name"],
        "display name": data["display_name"],
        "prompt": data["prompt"],
        "negative prompt": data["negative_prompt"] or "-",
        "seed": data["seed"],
        "model": model if not data["model_hash"] else f"{model} ({data['model_hash'][:12]})",
        "version": data["version"],
        "current state": _state_text(data["current_state"]),
        "identity": ", ".join(f"{a['kind']}/{a['name']}" for a in data["identity"]) or "-",
        "emotions recorded": data["history"]["count"],
    }
    width = max(map(len, lines))
    for key, value in lines.items():  # plain lines: prompts are long and must not be wrapped
        typer.echo(f"{key:<{width}}  {value}")
    if data["assets"]:
        assets = Table("kind", "state", "path")
        for a in data["assets"]:
            assets.add_row(a["kind"], a["state_hash"][:12], a["path"])
        console.print(assets)


@app.command()
def rename(ctx: typer.Context, name: str, new_name: str, workspace: WorkspaceOpt = None) -> None:
    """Rename a character; its history, identity and assets follow."""
    validate_slug(name)
    validate_slug(new_name)
    with open_forge(ctx, workspace) as forge:
        forge.rename(name, new_name)
    typer.echo(f"renamed {name} to {new_name}")


@app.command()
def delete(ctx: typer.Context, name: str, workspace: WorkspaceOpt = None) -> None:
    """Delete a character with its identity, history and asset files."""
    validate_slug(name)
    with open_forge(ctx, workspace) as forge:
        forge.delete(name)
    typer.echo(f"deleted {name}")


@app.command("import")
def import_cards(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="Folder of character cards (*.toml, *.yaml).")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create the characters described by the cards in FOLDER; ones that already exist are left alone."""
    cards = load_cards(folder)  # all validated before anything is written
    results = []
    with open_forge(ctx, workspace) as forge:
        for path, card in cards:
            status = "exists" if forge.exists(card.name) else "created"
            if status == "created":
                forge.create_from_card(card)
            results.append({"name": card.name, "file": str(path), "status": status})
    if json_out:
        echo_json(results)
        return
    table = Table("name", "card", "status")
    for r in results:
        table.add_row(r["name"], Path(r["file"]).name, r["status"])
    console.print(table)


# db ---------------------------------------------------------------------------------------------


def _database(ctx: typer.Context, workspace: Path | None, *, create: bool) -> Database:
    ws = chosen_workspace(ctx, workspace)
    if create:
        ws.ensure()
    elif not ws.db_path.exists():
        raise NotFound(f"no workspace database at {ws.db_path} (run `charforge init`)")
    return Database(ws.db_path)


def _report_revision(db: Database, json_out: bool, verb: str) -> None:
    current, head = db.current_revision(), Database.head_revision()
    db.close()
    if json_out:
        echo_json({"database": str(db.path), "current": current, "head": head})
    else:
        typer.echo(f"{verb}{current or 'base (empty)'} (newest: {head})")


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Migrate the schema forward (to the newest revision by default)."""
    db = _database(ctx, workspace, create=True)
    db.upgrade(revision)
    _report_revision(db, json_out, "schema at ")


@db_app.command("downgrade")
def db_downgrade(
    ctx: typer.Context,
    revision: Annotated[str | None, typer.Argument(help="Target revision, e.g. 0001 or base.")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Migrate the schema back to REVISION ('base' removes every table)."""
    if revision is None:
        raise InvalidInput("db downgrade needs a target revision, e.g. 0001 or base")
    db = _database(ctx, workspace, create=False)
    db.downgrade(revision)
    _report_revision(db, json_out, "schema at ")


@db_app.command("current")
def db_current(ctx: typer.Context, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Print the schema revision of the workspace database."""
    _report_revision(_database(ctx, workspace, create=False), json_out, "schema at ")
