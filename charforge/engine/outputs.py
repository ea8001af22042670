"""PNG files that remember how they were made.

The `parameters` text chunk uses the layout Stable Diffusion front ends (A1111, Forge, ComfyUI
readers, civitai) already parse: prompt, `Negative prompt:` line, then `Key: value` pairs. A picture
a user shares can therefore be redrawn anywhere, and charforge can read its own outputs back.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import PIL.Image
from PIL.PngImagePlugin import PngInfo

from charforge.engine.modes import GenerationParams
from charforge.engine.schedulers import sampler_label
from charforge.errors import InvalidInput
from charforge.files import atomic_write
from charforge.version import __version__


def format_parameters(params: GenerationParams) -> str:
    """The A1111-style `parameters` text for one image."""
    lines = [params.prompt]
    if params.negative_prompt:
        lines.append(f"Negative prompt: {params.negative_prompt}")
    fields = [
        ("Steps", params.steps),
        ("Sampler", sampler_label(params.scheduler)),
        ("CFG scale", f"{params.guidance:g}"),
        ("Seed", params.seed),
        ("Size", f"{params.width}x{params.height}"),
        ("Model hash", params.model_hash[:10]),
    ]
    if params.strength is not None:
        fields.append(("Denoising strength", f"{params.strength:g}"))
    fields.append(("Version", f"charforge {__version__}"))
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in fields))
    return "\n".join(lines)


def parse_parameters(text: str) -> dict[str, str]:
    """Inverse of `format_parameters` (and readable for other front ends' PNGs): prompt, negative and fields."""
    lines = text.strip("\n").split("\n")
    fields_line = lines.pop() if lines and re.match(r"^\s*Steps: ", lines[-1]) else ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt: "):
            in_negative = True
            line = line[len("Negative prompt: ") :]
        (negative if in_negative else prompt).append(line)
    result = {"prompt": "\n".join(prompt), "negative_prompt": "\n".join(negative)}
    for match in re.finditer(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)', fields_line):
        key, value = match.group(1).strip(), match.group(2).strip()
        if value.startswith('"'):
            value = json.loads(value)
        result[key] = value
    return result


def save_png(image: PIL.Image.Image, path: str | os.PathLike, params: GenerationParams | None = None) -> Path:
    """Write `image` atomically (temp file + rename), with its parameters chunk when given."""
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise InvalidInput(f"output must be a .png file, got {target.name}")
    if not target.parent.is_dir():
        raise InvalidInput(f"output folder does not exist: {target.parent}")
    info = PngInfo()
    if params is not None:
        info.add_text("parameters", format_parameters(params))
    return atomic_write(target, lambda stream: image.save(stream, format="PNG", pnginfo=info))


def read_parameters(path: str | os.PathLike) -> str | None:
    """The `parameters` chunk of a PNG, None when it has none."""
    with PIL.Image.open(path) as image:
        return image.info.get("parameters")


def _quote(value: object) -> str:
    """JSON-quote values that would break the comma-separated line, as A1111 does."""
    text = str(value)
    return json.dumps(text) if any(ch in text for ch in ',:"\n') else text
