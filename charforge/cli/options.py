"""Options and value types shared by the commands, checked while the command line is parsed.

Everything here runs before a command body, and imports neither torch nor diffusers: a typo in a
number, a device, an output path or an image costs milliseconds, not a model load. The value parsers
(`parser=` of typer options) raise `typer.BadParameter`, which `charforge.cli.main` prints as one
stderr line with exit code 2.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from charforge.cards import SEED_MAX
from charforge.errors import InvalidInput, NotFound

ENV_DEVICE = "CHARFORGE_DEVICE"
_WORKSPACE_META = "charforge.workspace"


# --workspace: declared by every command (tests/cli/test_options.py checks) and remembered in ctx.meta -------


def _remember_workspace(ctx: typer.Context, value: Path | None) -> None:
    # ctx.meta is shared along the command chain; the option after the command name is parsed
    # last, so it wins over the one before it.
    if value is not None:
        ctx.meta[_WORKSPACE_META] = value


WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        metavar="DIR",
        expose_value=False,
        callback=_remember_workspace,
        help="Workspace folder (default: $CHARFORGE_HOME, else ./.charforge).",
    ),
]


def chosen_workspace(ctx: typer.Context) -> Path | None:
    """The --workspace given after the command name, else before it, else None (the default)."""
    return ctx.meta.get(_WORKSPACE_META)


# help without typer's type placeholders (`<bool>`, `{name}`) -----------------------------------------


def tidy_help(command: Any) -> None:
    """Show NAME-style metavars in usage and help instead of typer's `{name}` and `<type>` labels."""
    for param in command.params:
        if param.metavar is None and param.name:
            param.metavar = "" if getattr(param, "is_flag", False) else param.name.upper()
        if param.param_type_name == "argument":
            dots = "..." if param.nargs != 1 else ""
            label = param.metavar if param.required else f"[{param.metavar}]"
            param.get_usage_pieces = lambda ctx=None, text=label + dots: [text]
            param.display_type_rich = lambda ctx=None: None
    plain_help_option = command.get_help_option  # built lazily, per context: tidy it when it appears

    def get_help_option(ctx: typer.Context) -> Any:
        option = plain_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        tidy_help(sub)


# value types ---------------------------------------------------------------------------------------------


def finite(low: float | None = None, high: float | None = None, *, low_open: bool = False) -> Callable[[Any], float]:
    """A parser for a finite float (no nan/inf) inside [low, high] (or (low, high] with `low_open`)."""
    where = (
        f"{'(' if low_open or low is None else '['}{'-inf' if low is None else f'{low:g}'}, "
        f"{'inf' if high is None else f'{high:g}'}{')' if high is None else ']'}"
    )

    def parse(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise typer.BadParameter(f"{value!r} is not a number") from None
        if not math.isfinite(number):
            raise typer.BadParameter(f"{value!r} is not a finite number")
        too_low = low is not None and (number <= low if low_open else number < low)
        if too_low or (high is not None and number > high):
            raise typer.BadParameter(f"{value} is not in {where}")
        return number

    return parse


def output_file(*suffixes: str) -> Callable[[Any], Path]:
    """A parser for a file to write: one of `suffixes`, in an existing folder, not an existing directory."""
    wanted = " or ".join(suffixes)

    def parse(value: Any) -> Path:
        path = Path(value)
        if path.is_dir():
            raise typer.BadParameter(f"{path} is a directory; name a file ending in {wanted}")
        if path.suffix.lower() not in suffixes:
            raise typer.BadParameter(f"must end in {wanted}, got {path.name}")
        if not path.parent.is_dir():
            raise typer.BadParameter(f"folder {path.parent} does not exist")
        return path

    return parse


def output_folder(*, parent_must_exist: bool = True) -> Callable[[Any], Path]:
    """A parser for a folder to write into: new or existing, never an existing file."""

    def parse(value: Any) -> Path:
        path = Path(value)
        if path.exists() and not path.is_dir():
            raise typer.BadParameter(f"{path} exists and is not a folder")
        if parent_must_exist and not path.parent.is_dir():
            raise typer.BadParameter(f"folder {path.parent} does not exist")
        return path

    return parse


def one_of(what: str, *choices: str) -> Callable[[Any], str]:
    """A parser for one of `choices` (case-insensitive), naming them all when the value is not one."""

    def parse(value: Any) -> str:
        key = str(value).strip().lower()
        if key not in choices:
            raise typer.BadParameter(f"unknown {what} {value!r} (choose from {', '.join(choices)})")
        return key

    return parse


def torch_build_devices() -> list[str]:
    """Device kinds this torch was built for, read from its version file without importing torch."""
    devices = ["cpu"]
    spec = importlib.util.find_spec("torch")
    locations = list(spec.submodule_search_locations or []) if spec else []
    version_file = Path(locations[0]) / "version.py" if locations else None
    if version_file is not None and version_file.is_file():
        module_spec = importlib.util.spec_from_file_location("charforge_torch_version", version_file)
        module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
        module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        if getattr(module, "cuda", None) or getattr(module, "hip", None):
            devices.append("cuda")
        if getattr(module, "xpu", None):
            devices.append("xpu")
    if sys.platform == "darwin":
        devices.append("mps")
    return devices


_DEVICE_FORM = re.compile(r"(cpu|cuda|mps|xpu)(:\d+)?")


def device(value: Any) -> str:
    """A parser for cpu, cuda, cuda:N, mps or xpu, refused at once when this torch was not built for it."""
    text = str(value).strip().lower()
    match = _DEVICE_FORM.fullmatch(text)
    built = torch_build_devices()
    if match is None:
        raise typer.BadParameter(f"unknown device {value!r}; this torch has {', '.join(built)}")
    if match.group(1) not in built:
        raise typer.BadParameter(f"{text} is not available: this torch has {', '.join(built)}")
    return text


def use_device(device: str | None) -> None:
    """Make `device` the default of every model this process loads (the engine reads $CHARFORGE_DEVICE)."""
    if device is not None:
        os.environ[ENV_DEVICE] = device


# shared options ------------------------------------------------------------------------------------------

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
DeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--device",
        parser=device,
        envvar=ENV_DEVICE,
        show_envvar=False,
        help="cpu, cuda, cuda:N or mps (default: $CHARFORGE_DEVICE, else the best available).",
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", min=0, max=SEED_MAX, help="Seed (same seed, same result)."),
]
StepsOpt = Annotated[int, typer.Option("--steps", min=1, max=1000, help="Denoising steps.")]
GuidanceOpt = Annotated[float, typer.Option("--guidance", parser=finite(0.0), help="Classifier-free guidance scale.")]
# how an identity is built (create, reinvert); unset: the character's settings.identity, else the defaults
IdentityStepsOpt = Annotated[
    int | None, typer.Option("--steps", min=1, max=200, help="Inversion steps (edits run on the same grid).")
]
IdentityMethodOpt = Annotated[str | None, typer.Option("--method", help="ddim, null-text, negative-prompt or direct.")]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model", help="Diffusers folder, .safetensors file, hub id or charforge-mini (the shipped model, default)."
    ),
]
PngOut = Annotated[Path, typer.Option("--out", parser=output_file(".png"), help="Output .png.")]


def fraction(*, low_open: bool = False) -> Callable[[Any], float]:
    """A parser for a number in [0, 1] (or (0, 1])."""
    return finite(0.0, 1.0, low_open=low_open)


# checks that need more than one option ----------------------------------------------------------------


IMAGE_MAX_PIXELS = 4096 * 4096
IMAGE_MIN_SIDE = 8


def open_image(path: Path, option: str, mode: str) -> Any:
    """The picture at `path` converted to `mode`, or one clear error naming `option`.

    The size in the file's header is checked before any pixel is decoded: a small file can claim
    50000x50000 pixels, and a 1x1 picture is no portrait to work on.
    """
    import warnings

    import PIL.Image

    if not path.is_file():
        raise NotFound(f"{option} file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(path) as handle:
                width, height = handle.size
                if width * height > IMAGE_MAX_PIXELS:
                    limit = IMAGE_MAX_PIXELS // 10**6
                    raise InvalidInput(f"{option} {path} is {width}x{height} pixels; the limit is {limit} megapixels")
                if min(width, height) < IMAGE_MIN_SIDE:
                    raise InvalidInput(
                        f"{option} {path} is {width}x{height} pixels; both sides must be at least {IMAGE_MIN_SIDE}"
                    )
                return handle.convert(mode)
    except (PIL.UnidentifiedImageError, OSError, PIL.Image.DecompressionBombError,
            PIL.Image.DecompressionBombWarning, ValueError, SyntaxError) as exc:  # fmt: skip
        if isinstance(exc, InvalidInput):
            raise
        raise InvalidInput(f"{option} {path} is not a readable image ({exc.__class__.__name__})") from None


def confirm(action: str, yes: bool) -> None:
    """Ask before destroying data; off a terminal (scripts, pipes) demand --yes instead of guessing."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise InvalidInput(f"{action} cannot be undone; pass --yes to confirm (no terminal to ask on)")
    if not typer.confirm(f"{action} cannot be undone. Continue?", default=False):
        raise typer.Abort()
