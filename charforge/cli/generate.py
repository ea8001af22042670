"""`charforge generate`: one image from a prompt (txt2img), an image (img2img) or an image + mask (inpaint).

Everything that can be checked without the model (files, names, numbers, the scheduler) is checked
while parsing, so a typo costs milliseconds, not a checkpoint load. Heavy imports stay inside the
command.
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
    one_of,
    open_image,
    use_device,
)
from charforge.errors import InvalidInput

app = typer.Typer()

# The engine's scheduler names (charforge.engine.schedulers.SCHEDULERS), listed here so that a typo is
# refused without importing diffusers; tests/cli/test_options.py keeps the two lists equal.
SCHEDULERS = ("ddim", "dpm++", "euler", "euler-a", "lms", "lcm")

# --fast: the shipped few-step student (charforge/models/portrait-mini-fast) and how it was distilled to
# sample: LCM steps, one UNet call each, guidance taken as an input (trained for scales 3-7)
FAST_STEPS, FAST_GUIDANCE, FAST_SCHEDULER = 4, 5.0, "lcm"


@app.command("generate")
def generate(
    prompt: Annotated[str, typer.Option(help="What to draw.")],
    out: PngOut,
    negative: Annotated[str, typer.Option(help="What to steer away from.")] = "",
    model: ModelOpt = None,
    seed: SeedOpt = None,
    steps: Annotated[
        int | None, typer.Option(min=1, max=1000, help=f"Sampling steps (default 30; {FAST_STEPS} with --fast).")
    ] = None,
    guidance: Annotated[
        float | None,
        typer.Option(parser=finite(0.0), help=f"Guidance scale (default 7.5; {FAST_GUIDANCE:g} with --fast)."),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(parser=one_of("scheduler", *SCHEDULERS),
                     help=f"The sampler: {', '.join(SCHEDULERS)} (default ddim; lcm with --fast)."),
    ] = None,
    fast: Annotated[
        bool,
        typer.Option(help="Use the shipped few-step student (portrait-mini-fast): 4 LCM steps, one UNet call each."),
    ] = False,
    width: Annotated[
        int | None, typer.Option(min=1, max=8192, help="Width in pixels (multiple of the VAE factor).")
    ] = None,
    height: Annotated[
        int | None, typer.Option(min=1, max=8192, help="Height in pixels (multiple of the VAE factor).")
    ] = None,
    image: Annotated[Path | None, typer.Option(help="Start from this image (img2img, or inpaint with --mask).")] = None,
    strength: Annotated[
        float | None,
        typer.Option(
            parser=fraction(low_open=True),
            help="How much of the image to redraw, in (0, 1] (default 0.75; 1 with --mask).",
        ),
    ] = None,
    mask: Annotated[Path | None, typer.Option(help="White = repaint; same size as --image.")] = None,
    device: DeviceOpt = None,
    config: Annotated[
        str | None, typer.Option(help="For a single-file --model: diffusers folder or hub id with its configs.")
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Generate one image and save it as a PNG carrying its parameters."""
    if mask is not None and image is None:
        raise InvalidInput("--mask needs --image (the picture to inpaint)")
    source = open_image(image, "--image", "RGB") if image is not None else None
    mask_image = open_image(mask, "--mask", "L") if mask is not None else None
    if source is not None and mask_image is not None and source.size != mask_image.size:
        raise InvalidInput(
            f"--mask is {mask_image.size[0]}x{mask_image.size[1]} but --image is {source.size[0]}x{source.size[1]}"
        )
    if fast:
        if model is not None or config is not None:
            raise InvalidInput("--fast uses the shipped few-step model; leave out --model/--config")
        if scheduler not in (None, FAST_SCHEDULER):
            raise InvalidInput(f"--fast samples with the {FAST_SCHEDULER} scheduler, got --scheduler {scheduler}")
        model = "charforge-mini-fast"
    steps = steps if steps is not None else FAST_STEPS if fast else 30
    guidance = guidance if guidance is not None else FAST_GUIDANCE if fast else 7.5
    scheduler = scheduler or (FAST_SCHEDULER if fast else "ddim")
    use_device(device)

    from charforge.engine import img2img, inpaint, load_model, save_png, txt2img

    bundle = load_model(model, device=device, config=config)
    common = dict(
        negative=negative,
        seed=0 if seed is None else seed,
        steps=steps,
        guidance=guidance,
        scheduler=scheduler,
        width=width,
        height=height,
    )
    if source is None:
        result = txt2img(bundle, prompt, progress=True, **common)
    elif mask_image is None:
        strength = 0.75 if strength is None else strength
        result = img2img(bundle, source, prompt, strength=strength, progress=True, **common)
    else:
        strength = 1.0 if strength is None else strength
        result = inpaint(bundle, source, mask_image, prompt, strength=strength, progress=True, **common)
    typer.echo(str(save_png(result.images[0], out, result.params[0])))
