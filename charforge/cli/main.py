"""Entry point of the `charforge` CLI: registers each command module's Typer app, and nothing else.

Adding a command is one new module under charforge/cli/ (its own `app = typer.Typer()`) plus one
registration line below. Every command gets `--workspace` and `-h`; every charforge or usage error
becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import NoReturn

# Before torch loads its OpenMP runtime: idle worker threads sleep instead of spinning. On a desktop
# or a CI runner shared with other work, spinning threads made every denoising step 5-10x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402

from charforge.cli import (  # noqa: E402
    batch,
    calibration,
    characters,
    database,
    demo,
    edit,
    emotions,
    generate,
    identity,
    look,
    mini_models,
    music,
    service,
)
from charforge.cli.options import WorkspaceOpt, tidy_help  # noqa: E402
from charforge.errors import CharforgeError  # noqa: E402
from charforge.version import __version__  # noqa: E402

app = typer.Typer(
    name="charforge",
    help="Keep a character's CG and BGM in step with how it feels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
train = typer.Typer(help="Train charforge's own mini models from procedural data.", no_args_is_help=True)
evaluate = typer.Typer(help="Measure charforge's own mini models.", no_args_is_help=True)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"charforge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version, help="Print the version."),
    workspace: WorkspaceOpt = None,
) -> None:
    """Keep a character's CG and BGM in step with how it feels."""


app.add_typer(characters.app)
app.add_typer(emotions.app)
app.add_typer(identity.app)
app.add_typer(look.app)
app.add_typer(music.app)
app.add_typer(demo.app)
app.add_typer(generate.app)
app.add_typer(edit.app)
app.add_typer(service.app)
app.add_typer(batch.app)
app.add_typer(calibration.app)
app.add_typer(database.app, name="db")
app.add_typer(train, name="train")
app.add_typer(evaluate, name="eval")
train.add_typer(mini_models.train_app)
evaluate.add_typer(mini_models.eval_app)
evaluate.add_typer(calibration.eval_app)


@cache  # building the tree from the signatures costs ~0.3 s; in-process callers (tests, tools) run many
def command() -> typer.core.TyperGroup:
    """The command tree, with help free of typer's type labels."""
    root = typer.main.get_command(app)
    tidy_help(root)
    return root


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")


class _HeldLog(logging.Handler):
    """Keeps the library's warnings (and Python warnings, e.g. PIL's) until the command ends: shown
    after a success, dropped after a failure, whose one error line says what went wrong."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage().strip().splitlines()
        line = f"warning: {one_line(text[0] if record.name != 'py.warnings' else text[-1])}" if text else ""
        if line and line not in self.lines:  # a lookup repeated by two layers warns once
            self.lines.append(line)


@contextmanager
def _held_logs() -> Iterator[_HeldLog]:
    root = logging.getLogger()
    held = _HeldLog()
    root.addHandler(held)
    logging.captureWarnings(True)
    try:
        yield held
    finally:
        logging.captureWarnings(False)
        root.removeHandler(held)


def one_line(text: str) -> str:
    """`text` on one line: user input quoted in a message may carry line breaks or control characters."""
    return _CONTROL.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text.strip())


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {one_line(message)}", err=True)
    sys.exit(2)


def main() -> None:
    with _held_logs() as held:
        try:
            code = command().main(prog_name="charforge", standalone_mode=False)
        except CharforgeError as exc:
            _fail(str(exc))
        except typer.Abort:
            _fail("aborted")
        except typer.TyperException as exc:
            # Usage errors (bad option value, unknown command): one line, not click's framed box.
            # A bare group invocation ("no args is help") is also one, whose help is already printed:
            # it is a successful call.
            if type(exc).__name__ == "NoArgsIsHelpError":
                sys.exit(0)
            typer.echo(f"error: {one_line(exc.format_message())}", err=True)
            sys.exit(getattr(exc, "exit_code", 2) or 2)
        except OSError as exc:  # a read-only workspace, a full disk, a vanished file
            where = f": {exc.filename}" if exc.filename else ""
            _fail(f"{exc.strerror or exc}{where}")
        except RecursionError:
            _fail("the input is nested too deeply")
        for line in held.lines:
            typer.echo(line, err=True)
    sys.exit(code if isinstance(code, int) else 0)
