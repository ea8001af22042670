"""`charforge learn`, `export-look`, `import-look`: a character's look as a textual-inversion token or a LoRA.

Arguments are checked before the workspace is opened or a model loaded; training shows a progress bar
with its ETA on stderr, and Ctrl-C stops it keeping the best checkpoint so far.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charforge.cli.workspace import JsonOpt, WorkspaceOpt, echo_json, open_forge
from charforge.errors import InvalidInput, NotFound
from charforge.paths import validate_slug

app = typer.Typer()

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Character name.")]
TokenFlag = Annotated[bool, typer.Option("--token", help="A textual-inversion token.")]
LoraFlag = Annotated[bool, typer.Option("--lora", help="A LoRA.")]


def _kind(token: bool, lora: bool) -> str:
    if token == lora:
        raise InvalidInput("choose exactly one of --token and --lora")
    return "token" if token else "lora"


@app.command()
def learn(
    ctx: typer.Context,
    name: NameArg,
    token: TokenFlag = False,
    lora: LoraFlag = False,
    images: Annotated[
        Path | None, typer.Option("--images", help="Folder of pictures of the character (default: its base CG).")
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, max=20000, help="Training steps.")] = None,
    rank: Annotated[int, typer.Option("--rank", min=1, max=128, help="LoRA rank.")] = 4,
    vectors: Annotated[int, typer.Option("--vectors", min=1, max=16, help="Vectors of the token.")] = 4,
    lr: Annotated[float | None, typer.Option("--lr", min=0.0, help="Learning rate.")] = None,
    word: Annotated[str | None, typer.Option("--as", help="The token to learn (default: <NAME>).")] = None,
    strength: Annotated[float, typer.Option("--strength", min=0.0, max=4.0, help="LoRA strength.")] = 1.0,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Teach a character's look as a token (--token) or a LoRA (--lora)."""
    validate_slug(name)
    kind = _kind(token, lora)
    if images is not None and not images.is_dir():
        raise NotFound(f"--images must be a folder of pictures: {images}")
    if word is not None:
        from charforge.engine.adapters import check_token

        check_token(word)
    options = {k: v for k, v in {"steps": steps, "lr": lr}.items() if v is not None}
    with open_forge(ctx, workspace) as forge:
        character = forge.get(name)
        if kind == "token":
            result = character.learn_token(images, token=word, vectors=vectors, progress=True, **options)
        else:
            result = character.learn_lora(images, rank=rank, strength=strength, progress=True, **options)
    data = {"character": name, **result.to_dict()}
    if json_out:
        echo_json(data)
        return
    what = f"token {result.artifact.metadata['token']}" if kind == "token" else f"rank-{rank} LoRA"
    stopped = " (interrupted: kept the best checkpoint)" if result.interrupted else ""
    typer.echo(f"{name}: learnt {what} in {result.steps} steps, {result.seconds:.0f} s{stopped}")
    hint = f"put {result.artifact.metadata['token']} in its prompt, then " if kind == "token" else ""
    typer.echo(f"{hint}run `charforge reinvert {name} --rerender` to redraw its base CG with the look")


@app.command("export-look")
def export_look(
    ctx: typer.Context,
    name: NameArg,
    token: TokenFlag = False,
    lora: LoraFlag = False,
    out: Annotated[Path | None, typer.Option("--out", help="The .safetensors file to write.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Write a character's token (learned_embeds layout) or LoRA (diffusers layout) to a file."""
    validate_slug(name)
    kind = _kind(token, lora)
    if out is None:
        raise InvalidInput("export-look needs --out FILE.safetensors")
    if out.suffix != ".safetensors":
        raise InvalidInput(f"--out must end in .safetensors, got {out.name}")
    if not out.parent.is_dir():
        raise NotFound(f"output folder does not exist: {out.parent}")
    from charforge.character.look import export_look as export

    with open_forge(ctx, workspace) as forge:
        written = export(forge.get(name), kind, out)
    typer.echo(f"{name}: {kind} written to {written}")


@app.command("import-look")
def import_look(
    ctx: typer.Context,
    name: NameArg,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="An embedding or LoRA (.safetensors).")],
    strength: Annotated[float, typer.Option("--strength", min=0.0, max=4.0, help="LoRA strength.")] = 1.0,
    word: Annotated[str | None, typer.Option("--as", help="Token for an embedding (default: its own name).")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Give a character a community embedding or LoRA (checked against its model first)."""
    validate_slug(name)
    if file.suffix != ".safetensors":
        raise InvalidInput(f"refusing {file.name}: only .safetensors files are imported (pickle files can run code)")
    if not file.is_file():
        raise NotFound(f"file not found: {file}")
    from charforge.character.look import import_look as store

    with open_forge(ctx, workspace) as forge:
        info = store(forge.get(name), file, strength=strength, token=word)
    if json_out:
        echo_json({"character": name, "artifact": info.to_dict()})
        return
    what = f"token {info.metadata['token']}" if info.kind == "textual_inversion" else f"LoRA at strength {strength:g}"
    typer.echo(f"{name}: imported {file.name} as its {what}")
