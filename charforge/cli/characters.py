"""The cast of a workspace: init, create, list, show, rename, delete, import.

Validation happens before anything is opened or written, so a bad argument exits 2 with one line on
stderr and leaves the workspace as it was. Only `init`, `create` and `import` may create a workspace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from charforge.cards import CharacterCard, load_cards
from charforge.cli.edit import identity_choices
from charforge.cli.options import (
    DeviceOpt,
    IdentityMethodOpt,
    IdentityStepsOpt,
    JsonOpt,
    ModelOpt,
    SeedOpt,
    WorkspaceOpt,
    YesOpt,
    confirm,
    use_device,
)
from charforge.cli.workspace import echo_json, get_character, open_forge
from charforge.errors import InvalidInput
from charforge.models import check_model_ref
from charforge.paths import validate_slug

app = typer.Typer()
console = Console(soft_wrap=True)  # long prompts and paths stay on one line

HISTORY_SHOWN = 10
NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Character name.")]


def state_text(state: dict[str, float] | None) -> str:
    if not state:
        return "neutral"
    return " ".join(f"{k}={v:g}" for k, v in state.items())


def _plan_text(plan: dict[str, Any]) -> str:
    return f"valence {plan['valence']:+.2f} arousal {plan['arousal']:+.2f} ({plan['mode']}, {plan['bpm']:.0f} bpm)"


def asset_shows(asset: dict[str, Any]) -> str:
    """What an asset depicts, in words: the emotion state of a CG, the mood of a piece of music."""
    params = asset.get("params") or {}
    if "state" in params:
        return state_text(params["state"])
    if "plan" in params:
        text = _plan_text(params["plan"])
        return f"{text} -> {_plan_text(params['plan_to'])}" if "plan_to" in params else text
    return f"state {asset['state_hash'][:12]}"


@app.command()
def init(ctx: typer.Context, json_out: JsonOpt = False, workspace: WorkspaceOpt = None) -> None:
    """Create the workspace (or bring an existing one to the newest schema)."""
    with open_forge(ctx, create=True) as forge:
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
    name: Annotated[str, typer.Argument(metavar="NAME", help="Lowercase letters, digits, '-' and '_'.")],
    prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="Base prompt describing the character.")] = None,
    negative: Annotated[str, typer.Option("--negative", help="Negative prompt.")] = "",
    seed: SeedOpt = None,
    model: ModelOpt = None,
    display_name: Annotated[str | None, typer.Option("--display-name", help="Name shown to people.")] = None,
    no_render: Annotated[
        bool, typer.Option("--no-render", help="Store the definition only; build the identity later.")
    ] = False,
    steps: IdentityStepsOpt = None,
    method: IdentityMethodOpt = None,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Create a character: render its base CG, invert it and store the identity (unless --no-render)."""
    if prompt is None:
        raise InvalidInput("create needs --prompt TEXT describing the character")
    # kept in the character's settings, so a later reinvert or rerender builds the identity the same way
    identity = identity_choices(steps, method)
    card = CharacterCard.build(
        name=name, prompt=prompt, negative_prompt=negative, seed=seed, model=model, display_name=display_name,
        settings={"identity": identity} if identity else {},
    )  # fmt: skip
    use_device(device)
    with open_forge(ctx, create=True) as forge:
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
def list_characters(ctx: typer.Context, json_out: JsonOpt = False, workspace: WorkspaceOpt = None) -> None:
    """List the characters of the workspace."""
    with open_forge(ctx) as forge:
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
                      state_text(r["current_state"]), str(r["version"]))  # fmt: skip
    console.print(table)


@app.command()
def show(ctx: typer.Context, name: NameArg, json_out: JsonOpt = False, workspace: WorkspaceOpt = None) -> None:
    """Show one character: definition, identity artifacts, recent emotions and assets."""
    validate_slug(name)
    with open_forge(ctx) as forge:
        character = get_character(forge, name)
        data = character.to_dict()
        data["identity"] = [a.to_dict() for a in character.store.identity()]
        data["history"] = {
            "count": character.store.history_count(),
            "recent": [e.to_dict() for e in character.store.history(limit=HISTORY_SHOWN)],
        }
        data["assets"] = [{**a.to_dict(), "shows": asset_shows(a.to_dict())} for a in character.store.assets()]
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
        "current state": state_text(data["current_state"]),
        "identity": ", ".join(f"{a['kind']}/{a['name']}" for a in data["identity"]) or "-",
        "emotions recorded": data["history"]["count"],
    }
    width = max(map(len, lines))
    for key, value in lines.items():  # plain lines: prompts are long and must not be wrapped
        typer.echo(f"{key:<{width}}  {value}")
    if data["assets"]:  # plain lines too: a path cut short by a narrow terminal is of no use
        typer.echo("assets:")
        shows_width = max(len(a["shows"]) for a in data["assets"])
        for a in data["assets"]:
            typer.echo(f"  {a['kind']:<4} {a['shows']:<{shows_width}}  {a['path']}")


@app.command()
def rename(
    ctx: typer.Context,
    name: NameArg,
    new_name: Annotated[str, typer.Argument(metavar="NEW_NAME", help="The new name.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Rename a character; its history, identity and assets follow."""
    validate_slug(name)
    validate_slug(new_name)
    with open_forge(ctx) as forge:
        get_character(forge, name)
        forge.rename(name, new_name)
    typer.echo(f"renamed {name} to {new_name}")


@app.command()
def delete(ctx: typer.Context, name: NameArg, yes: YesOpt = False, workspace: WorkspaceOpt = None) -> None:
    """Delete a character with its identity, history and asset files (asks first, or needs --yes)."""
    validate_slug(name)
    with open_forge(ctx) as forge:
        get_character(forge, name)
        confirm(f"deleting {name} with its identity, history and assets", yes)
        forge.delete(name)
    typer.echo(f"deleted {name}")


@app.command("set")
def set_model(
    ctx: typer.Context,
    name: NameArg,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Diffusers folder, .safetensors file or hub id; 'default' for the shipped model."),
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Change a character's model (its identity must then be rebuilt: `charforge reinvert NAME`)."""
    validate_slug(name)
    if model is None:
        raise InvalidInput("set needs --model REF (a diffusers folder, .safetensors file, hub id or 'default')")
    ref = None if model.strip().lower() == "default" else model
    check_model_ref(ref)  # before anything is written
    with open_forge(ctx) as forge:
        character = get_character(forge, name)
        if character.model_ref == ref:
            typer.echo(f"{name} already uses {ref or 'the default model'}")
            return
        character.update(model=ref)
        stale = identity_staleness(character)
    typer.echo(f"{name} now uses {ref or 'the default model'}")
    if stale:
        typer.echo(stale)


def identity_staleness(character: Any) -> str | None:
    """The usual StaleIdentity message if the character's identity was made with another model."""
    from charforge.character.identity import check_fresh, current_model_hash, has_identity
    from charforge.errors import StaleIdentity

    if not has_identity(character):
        return None
    try:
        check_fresh(character, current_model_hash(character))
    except StaleIdentity as exc:
        return str(exc)
    return None


@app.command("import")
def import_cards(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(metavar="FOLDER", help="Folder of character cards (*.toml, *.yaml).")],
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Create the characters described by the cards in FOLDER; ones that already exist are left alone."""
    cards = load_cards(folder)  # all validated before anything is written
    results = []
    with open_forge(ctx, create=True) as forge:
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
