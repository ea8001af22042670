"""`charforge generate`: one image from a prompt (txt2img), an image (img2img) or an image + mask (inpaint).

Everything that can be checked without the model (files, names, numbers) is checked before loading
it, so a typo costs milliseconds, not a checkpoint load. Heavy imports stay inside the command so
`charforge --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from charforge.cli.main import app
from charforge.errors import InvalidInput, NotFound


@app.command("generate")
def generate(
    prompt: Annotated[str, typer.Option(help="What to draw.")],
    out: Annotated[Path, typer.Option(help="Output .png (generation parameters are stored inside).")],
    negative: Annotated[str, typer.Option(help="What to steer away from.")] = "",
    model: Annotated[
        Optional[str],
        typer.Option(help="Diffusers folder, .safetensors file or hub id (default: the shipped portrait model)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same image, on any device.")] = 0,
    steps: Annotated[int, typer.Option(help="Sampling steps.")] = 30,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale.")] = 7.5,
    scheduler: Annotated[str, typer.Option(help="ddim, dpm++, euler, euler-a, lms or lcm.")] = "ddim",
    width: Annotated[Optional[int], typer.Option(help="Width in pixels (multiple of the VAE factor).")] = None,
    height: Annotated[Optional[int], typer.Option(help="Height in pixels (multiple of the VAE factor).")] = None,
    image: Annotated[
        Optional[Path], typer.Option(help="Start from this image (img2img, or inpaint with --mask).")
    ] = None,
    strength: Annotated[
        Optional[float], typer.Option(help="How much of the image to redraw, in (0, 1] (default 0.75; 1 with --mask).")
    ] = None,
    mask: Annotated[Optional[Path], typer.Option(help="White = repaint; same size as --image.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, mps (default: best available).")] = None,
    config: Annotated[
        Optional[str], typer.Option(help="For a single-file --model: diffusers folder or hub id with its configs.")
    ] = None,
) -> None:
    """Generate one image and save it as a PNG carrying its parameters."""
    from charforge.engine.schedulers import scheduler_key

    scheduler_key(scheduler)
    if steps < 1:
        raise InvalidInput(f"--steps must be at least 1, got {steps}")
    for name, value in (("--width", width), ("--height", height)):
        if value is not None and value <= 0:
            raise InvalidInput(f"{name} must be positive, got {value}")
    if strength is not None and not 0 < strength <= 1:
        raise InvalidInput(f"--strength must be in (0, 1], got {strength}")
    if out.suffix.lower() != ".png":
        raise InvalidInput(f"--out must end in .png, got {out.name}")
    if not out.parent.is_dir():
        raise NotFound(f"output folder does not exist: {out.parent}")
    if mask is not None and image is None:
        raise InvalidInput("--mask needs --image (the picture to inpaint)")
    source = _open_image(image, "--image", "RGB") if image is not None else None
    mask_image = _open_image(mask, "--mask", "L") if mask is not None else None
    if source is not None and mask_image is not None and source.size != mask_image.size:
        raise InvalidInput(
            f"--mask is {mask_image.size[0]}x{mask_image.size[1]} but --image is {source.size[0]}x{source.size[1]}"
        )

    from charforge.engine import img2img, inpaint, load_model, save_png, txt2img

    bundle = load_model(model, device=device, config=config)
    common = dict(
        negative=negative, seed=seed, steps=steps, guidance=guidance, scheduler=scheduler, width=width, height=height
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


def _open_image(path: Path, option: str, mode: str):
    import PIL.Image

    if not path.is_file():
        raise NotFound(f"{option} file not found: {path}")
    try:
        with PIL.Image.open(path) as handle:
            return handle.convert(mode)
    except (PIL.UnidentifiedImageError, OSError) as exc:
        raise InvalidInput(f"{option} {path} is not a readable image ({exc.__class__.__name__})") from exc
