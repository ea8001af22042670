"""Entry point of the `charforge` CLI: one typer app, command groups registered from sibling modules.

Every charforge error becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import os
import sys

# Before torch loads its OpenMP runtime: idle worker threads sleep instead of spinning. On a desktop
# or a CI runner shared with other work, spinning threads made every denoising step 5-10x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402

from charforge.errors import CharforgeError  # noqa: E402

app = typer.Typer(
    name="charforge",
    help="Keep a character's CG and BGM in step with how it feels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    # Each module adds its commands to `app`; importing them here keeps main.py free of command bodies.
    from charforge.cli import commands_store  # noqa: F401
    from charforge.cli import commands_train  # noqa: F401
    from charforge.cli import commands_bgm  # noqa: F401
    from charforge.cli import commands_engine  # noqa: F401
    from charforge.cli import commands_demo  # noqa: F401
    from charforge.cli import commands_edit  # noqa: F401
    from charforge.cli import commands_feel  # noqa: F401
    from charforge.cli import commands_music  # noqa: F401
    from charforge.cli import commands_emotions  # noqa: F401


def fail(message: str) -> typer.Exit:
    """Print one clear line on stderr and return the exit to raise (code 2)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def main() -> None:
    _register_commands()
    try:
        code = app(standalone_mode=False)
    except CharforgeError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(2)
    except typer.exceptions.TyperException as exc:
        # Usage errors (bad option value, unknown command): one line, not click's framed box.
        # A bare group invocation ("no args is help") is also a TyperException whose help is
        # already printed: it is a successful call.
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(0)
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(getattr(exc, "exit_code", 2) or 2)
    sys.exit(code if isinstance(code, int) else 0)
