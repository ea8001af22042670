"""`charforge learn`, `export-look`, `import-look`: a character's look as a textual-inversion token or a LoRA.

Arguments are checked before the workspace is opened or a model loaded; training shows a progress bar
with its ETA on stderr, and Ctrl-C stops it keeping the best checkpoint so far.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charforge.cli.options import DeviceOpt, JsonOpt, WorkspaceOpt, finite, output_file, use_device
from charforge.cli.workspace import echo_json, get_character, open_forge
from charforge.errors import InvalidInput, NotFound
from charforge.paths import validate_slug

app = typer.Typer()

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Character name.")]
TokenFlag = Annotated[bool, typer.Option("--token", help="A textual-inversion token.")]
LoraFlag = Annotated[bool, typer.Option("--lora", help="A LoRA.")]
StrengthOpt = Annotated[float, typer.Option("--strength", parser=finite(0.0, 4.0), help="LoRA strength, [0, 4].")]
WordOpt = Annotated[str | None, typer.Option("--as", metavar="TOKEN", help="The token, e.g. <mira>.")]


def _kind(token: bool, lora: bool) -> str:
    if token == lora:
        raise InvalidInput("choose exactly one of --token and --lora")
    return "token" if token else "lora"


def _check_word(word: str | None) -> None:
    if word is not None:
        from charforge.engine.adapters.textual_inversion import check_token

        check_token(word)


@app.command()
def learn(
    ctx: typer.Context,
    name: NameArg,
    token: TokenFlag = False,
    lora: LoraFlag = False,
    images: Annotated[
        Path | None, typer.Option("--images", metavar="DIR", help="Pictures of the character (default: its base CG).")
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, max=20000, help="Training steps.")] = None,
    rank: Annotated[int | None, typer.Option("--rank", min=1, max=128, help="LoRA rank (default 8).")] = None,
    vectors: Annotated[int, typer.Option("--vectors", min=1, max=16, help="Vectors of the token.")] = 4,
    lr: Annotated[
        float | None, typer.Option("--lr", parser=finite(0.0, 1.0, low_open=True), help="Learning rate, (0, 1].")
    ] = None,
    word: WordOpt = None,
    strength: StrengthOpt = 1.0,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Teach a character's look as a token (--token) or a LoRA (--lora)."""
    validate_slug(name)
    kind = _kind(token, lora)
    if images is not None and not images.is_dir():
        raise NotFound(f"--images must be a folder of pictures: {images}")
    _check_word(word)
    options = {k: v for k, v in {"steps": steps, "lr": lr}.items() if v is not None}
    use_device(device)
    with open_forge(ctx) as forge:
        character = get_character(forge, name)
        if kind == "token":
            result = character.learn_token(images, token=word, vectors=vectors, progress=True, **options)
        else:
            if rank is not None:
                options["rank"] = rank
            result = character.learn_lora(images, strength=strength, progress=True, **options)
    if json_out:
        echo_json({"character": name, **result.to_dict()})
        return
    meta = result.artifact.metadata
    what = f"token {meta['token']}" if kind == "token" else f"rank-{meta['rank']} LoRA"
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
    out: Annotated[
        Path | None, typer.Option("--out", parser=output_file(".safetensors"), help="The .safetensors file to write.")
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Write a character's token (learned_embeds layout) or LoRA (diffusers layout) to a file."""
    validate_slug(name)
    kind = _kind(token, lora)
    if out is None:
        raise InvalidInput("export-look needs --out FILE.safetensors")
    from charforge.character.look import export_look as export

    with open_forge(ctx) as forge:
        written = export(get_character(forge, name), kind, out)
    typer.echo(f"{name}: {kind} written to {written}")


@app.command("import-look")
def import_look(
    ctx: typer.Context,
    name: NameArg,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="An embedding or LoRA (.safetensors).")],
    strength: StrengthOpt = 1.0,
    word: WordOpt = None,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Give a character a community embedding or LoRA (checked against its model first)."""
    validate_slug(name)
    if file.suffix != ".safetensors":
        raise InvalidInput(f"refusing {file.name}: only .safetensors files are imported (pickle files can run code)")
    if not file.is_file():
        raise NotFound(f"file not found: {file}")
    _check_word(word)
    use_device(device)
    from charforge.character.look import import_look as store

    with open_forge(ctx) as forge:
        info = store(get_character(forge, name), file, strength=strength, token=word)
    if json_out:
        echo_json({"character": name, "artifact": info.to_dict()})
        return
    what = f"token {info.metadata['token']}" if info.kind == "textual_inversion" else f"LoRA at strength {strength:g}"
    typer.echo(f"{name}: imported {file.name} as its {what}")
