"""`charforge invert`, `charforge edit`, `charforge attention`: inversion and attention control by hand.

These are the engine's debugging and power-user tools: invert a picture and check how well it comes
back (PSNR), redraw it with another prompt, and look at where a word attends. Inputs are checked
while parsing or before the model is loaded; heavy imports stay inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charforge.cli.options import (
    DeviceOpt,
    ModelOpt,
    PngOut,
    SeedOpt,
    WorkspaceOpt,
    finite,
    fraction,
    open_image,
    output_file,
    output_folder,
    use_device,
)
from charforge.errors import InvalidInput, ModelLoadError
from charforge.files import atomic_write

app = typer.Typer()

METHOD_HELP = "ddim, null-text, negative-prompt or direct (default: direct)."
StepsOpt = Annotated[int, typer.Option(min=1, max=1000, help="DDIM steps.")]
GuidanceOpt = Annotated[
    float, typer.Option(parser=finite(1.0), help="Guidance the inversion is made for (>= 1; edits use it too).")
]


def check_method(method: str) -> None:
    """Unknown inversion methods are refused before the model loads (the engine's registry knows them)."""
    from charforge.engine.inversion import METHODS

    if method not in METHODS:
        raise InvalidInput(f"unknown --method '{method}' (choose from {', '.join(METHODS)})")


def identity_choices(steps: int | None, method: str | None) -> dict[str, int | str]:
    """The identity-build options a command was given (create, reinvert), the method checked first."""
    if method is not None:
        check_method(method)
    return {k: v for k, v in {"steps": steps, "method": method}.items() if v is not None}


def _save_png(image, out: Path) -> None:
    atomic_write(out, lambda stream: image.save(stream, format="PNG"))


def _load(model: str | None, device: str | None):
    from charforge.engine import load_model
    from charforge.engine.loading import default_model_path

    if model is None:
        default = default_model_path()
        if not (default / "model_index.json").is_file():
            raise ModelLoadError(f"the default model is not installed at {default}; pass --model FOLDER|FILE|HUB_ID")
        model = str(default)
    return load_model(model, device=device)


def _to_image(pixels):
    from diffusers.image_processor import VaeImageProcessor

    return VaeImageProcessor.numpy_to_pil(pixels.permute(0, 2, 3, 1).float().cpu().numpy())[0]


def _parse_reweights(items: list[str]) -> dict[str, float]:
    weights: dict[str, float] = {}
    for item in items:
        word, sep, value = item.rpartition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = None
        if not sep or not word.strip() or weight is None or not 0 <= weight < float("inf"):
            raise InvalidInput(f"--reweight expects WORD=FACTOR with a factor >= 0, got '{item}'")
        weights[word.strip()] = weight
    return weights


@app.command("invert")
def invert_command(
    image: Annotated[Path, typer.Argument(metavar="IMAGE", help="The picture to invert.")],
    prompt: Annotated[str, typer.Option(help="A description of the picture.")],
    out: Annotated[
        Path,
        typer.Option(parser=output_folder(), help="Folder for inversion.safetensors/.json and reconstruction.png."),
    ],
    method: Annotated[str, typer.Option(help=METHOD_HELP)] = "direct",
    steps: StepsOpt = 50,
    guidance: GuidanceOpt = 7.5,
    negative: Annotated[str, typer.Option(help="Negative prompt used when redrawing.")] = "",
    model: ModelOpt = None,
    device: DeviceOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Invert IMAGE, save the inversion, redraw it and print the reconstruction PSNR."""
    picture = open_image(image, "IMAGE", "RGB")
    use_device(device)
    check_method(method)

    from charforge.engine.edit import reconstruct
    from charforge.engine.images import prepare_image, psnr, unit_pixels
    from charforge.engine.inversion import invert

    bundle = _load(model, device)
    inversion = invert(
        bundle, picture, prompt, method, steps=steps, guidance=guidance, negative_prompt=negative, progress=True
    )
    inversion.save_pretrained(out)
    pixels = reconstruct(bundle, inversion, progress=True)
    _save_png(_to_image(pixels), out / "reconstruction.png")
    target = unit_pixels(prepare_image(bundle, picture))
    typer.echo(
        f"{out}  reconstruction PSNR {psnr(pixels, target):.2f} dB ({method}, {steps} steps, guidance {guidance})"
    )


@app.command("edit")
def edit_command(
    image: Annotated[
        Path, typer.Argument(metavar="IMAGE", help="The picture to edit, or a folder written by `charforge invert`.")
    ],
    prompt: Annotated[str, typer.Option(help="A description of the picture (the source prompt).")],
    to: Annotated[str, typer.Option(help="The same description, edited (the target prompt).")],
    out: PngOut,
    method: Annotated[str, typer.Option(help=METHOD_HELP)] = "direct",
    steps: Annotated[int, typer.Option(min=1, max=1000, help="DDIM steps (ignored for an inversion folder).")] = 50,
    guidance: Annotated[
        float, typer.Option(parser=finite(1.0), help="Guidance, >= 1 (ignored for an inversion folder).")
    ] = 7.5,
    blend: Annotated[list[str], typer.Option(help="Only change where this word attends (repeatable).")] = [],  # noqa: B006
    blend_threshold: Annotated[
        float, typer.Option(parser=fraction(), help="Attention level (0-1) that counts as the word's region.")
    ] = 0.3,
    reweight: Annotated[list[str], typer.Option(help="WORD=FACTOR: strengthen a target word (repeatable).")] = [],  # noqa: B006
    masactrl: Annotated[bool, typer.Option(help="Mutual self-attention for pose/gesture changes.")] = False,
    offset_targets: Annotated[
        bool,
        typer.Option(help="Direct inversion: correct the edited branch too (keeps identity; not the paper's default)."),
    ] = False,
    cross_steps: Annotated[
        float, typer.Option(parser=fraction(), help="Fraction of steps the target copies cross-attention.")
    ] = 0.6,
    self_steps: Annotated[
        float, typer.Option(parser=fraction(), help="Fraction of steps the target copies self-attention.")
    ] = 0.4,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Redraw IMAGE with the --to prompt, keeping what the prompts share."""
    weights = _parse_reweights(reweight)
    from_folder = image.is_dir()
    picture = None if from_folder else open_image(image, "IMAGE", "RGB")
    use_device(device)
    check_method(method)

    from charforge.engine.edit import edit, prompt_edit_controllers
    from charforge.engine.inversion import InversionResult, invert

    if from_folder:
        inversion = InversionResult.from_pretrained(image)
        if inversion.prompt != prompt:
            raise InvalidInput(f"--prompt differs from the prompt the folder was inverted with ('{inversion.prompt}')")
    bundle = _load(model, device)
    controllers = prompt_edit_controllers(  # before inverting: unknown words fail in milliseconds
        bundle.tokenizer, prompt, to, blend_words=blend, reweight=weights, masactrl=masactrl,
        steps=inversion.steps if from_folder else steps, cross_replace_steps=cross_steps, self_replace_steps=self_steps,
    )  # fmt: skip
    if not from_folder:
        inversion = invert(bundle, picture, prompt, method, steps=steps, guidance=guidance, progress=True)
    result = edit(bundle, inversion, to, controllers, offset_targets=offset_targets, progress=True)
    _save_png(result.images[0], out)
    typer.echo(str(out))


@app.command("attention")
def attention_command(
    image_or_prompt: Annotated[
        str,
        typer.Argument(metavar="IMAGE_OR_PROMPT", help="An image file (with --prompt) or a prompt to generate from."),
    ],
    word: Annotated[str, typer.Option(help="The word whose cross-attention to show.")],
    out: Annotated[Path, typer.Option(parser=output_file(".png"), help="Output .png (the map laid over the picture).")],
    prompt: Annotated[str | None, typer.Option(help="Description of the image (image mode).")] = None,
    steps: Annotated[int, typer.Option(min=1, max=1000, help="Sampling steps.")] = 30,
    seed: SeedOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Show where WORD attends: in a generated picture, or in a given image described by --prompt."""
    as_path = Path(image_or_prompt)
    image_mode = as_path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp") or as_path.is_file()
    if image_mode and prompt is None:
        raise InvalidInput("an image needs --prompt describing it (the word is looked up in that prompt)")
    text = prompt if image_mode else image_or_prompt
    picture = open_image(as_path, "IMAGE", "RGB") if image_mode else None
    use_device(device)

    from charforge.engine.edit import word_attention

    bundle = _load(model, device)
    heat = word_attention(bundle, text, word, picture, steps=steps, seed=0 if seed is None else seed, progress=True)
    _save_png(heat, out)
    typer.echo(str(out))
