"""Commands that change what a character looks like at base: region masks, re-inversion, inpainting.

Arguments are validated before the workspace is opened or a model is loaded; model-running modules
are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charforge.cli.edit import identity_choices
from charforge.cli.options import (
    DeviceOpt,
    IdentityMethodOpt,
    IdentityStepsOpt,
    JsonOpt,
    SeedOpt,
    WorkspaceOpt,
    fraction,
    open_image,
    output_file,
    use_device,
)
from charforge.cli.workspace import echo_json, get_character, open_forge
from charforge.errors import InvalidInput
from charforge.paths import validate_slug

app = typer.Typer()

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Character name.")]


@app.command()
def mask(
    ctx: typer.Context,
    name: NameArg,
    region: Annotated[str, typer.Argument(metavar="REGION", help="Region name, e.g. face, hair, outfit, background.")],
    source: Annotated[Path | None, typer.Option("--from", help="PNG to use as the mask (white = inside).")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", parser=output_file(".png"), help="Write the stored mask to this PNG.")
    ] = None,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Set a region mask from a picture (--from), or export the stored one (--out)."""
    validate_slug(name)
    validate_slug(region)
    if (source is None) == (out is None):
        raise InvalidInput("mask needs exactly one of --from FILE (set the mask) or --out FILE (export it)")
    picture = open_image(source, "--from", "L") if source is not None else None
    use_device(device)
    from charforge.character.identity import load_identity

    with open_forge(ctx) as forge:
        character = get_character(forge, name)
        if picture is not None:
            character.set_mask(region, picture)
        stored = load_identity(character).mask(region)
    if out is not None:
        import numpy as np
        import PIL.Image

        PIL.Image.fromarray(stored.numpy().astype(np.uint8) * 255).save(out)
    data = {"character": name, "region": region, "pixels": int(stored.sum()), "set": source is not None,
            "out": None if out is None else str(out)}  # fmt: skip
    if json_out:
        echo_json(data)
    elif source is not None:
        typer.echo(f"{name}: {region} mask set ({data['pixels']} pixels)")
    else:
        typer.echo(f"{name}: {region} mask written to {out}")


@app.command()
def reinvert(
    ctx: typer.Context,
    name: NameArg,
    rerender: Annotated[bool, typer.Option("--rerender", help="Draw a fresh base CG from prompt and seed.")] = False,
    steps: IdentityStepsOpt = None,
    method: IdentityMethodOpt = None,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Rebuild a character's identity with its current model (fixes a stale identity)."""
    validate_slug(name)
    options = identity_choices(steps, method)
    use_device(device)
    with open_forge(ctx) as forge:
        character = get_character(forge, name)
        character.reinvert(rerender=rerender, **options)
        base = character.feel(record=False)
        data = {"character": name, "model_hash": character.model_hash, "base_cg": str(base.path),
                "identity": [a.to_dict() for a in character.store.identity()]}  # fmt: skip
    if json_out:
        echo_json(data)
    else:
        typer.echo(f"{name}: identity rebuilt with model {(data['model_hash'] or '')[:10]}; base CG {data['base_cg']}")


@app.command()
def inpaint(
    ctx: typer.Context,
    name: NameArg,
    prompt: Annotated[
        str | None, typer.Option("--prompt", "-p", help="What the region becomes, e.g. 'red outfit'.")
    ] = None,
    region: Annotated[
        str | None, typer.Option("--region", help="A stored mask: face, hair, outfit, background...")
    ] = None,
    mask_file: Annotated[Path | None, typer.Option("--mask", help="A mask picture instead of --region.")] = None,
    adopt: Annotated[bool, typer.Option("--adopt", help="Make the result the character's new base.")] = False,
    seed: SeedOpt = None,
    strength: Annotated[
        float,
        typer.Option("--strength", parser=fraction(low_open=True), help="How much of the region is redrawn, (0, 1]."),
    ] = 1.0,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Redraw one region of a character's base CG; --adopt makes it the new base (re-inverted)."""
    validate_slug(name)
    if prompt is None or not prompt.strip():
        raise InvalidInput("inpaint needs --prompt TEXT, e.g. --prompt 'red outfit'")
    if (region is None) == (mask_file is None):
        raise InvalidInput("inpaint needs exactly one of --region NAME or --mask FILE")
    if region is not None:
        validate_slug(region)
    target = region if region is not None else open_image(mask_file, "--mask", "L")
    use_device(device)
    with open_forge(ctx) as forge:
        character = get_character(forge, name)
        result = character.inpaint(target, prompt, adopt=adopt, seed=seed, strength=strength)
        data = {"character": name, **result.to_dict(), "base_prompt": character.prompt}
    if json_out:
        echo_json(data)
        return
    typer.echo(str(result.path))
    if adopt:
        typer.echo(f"{name} adopted it as the new base; prompt now: {data['base_prompt']}")
