"""Progress bars that leave nothing behind: drawn only on a terminal, erased when they end.

A bar left on stderr by a command that then failed would break the CLI's rule of one error line; a
bar written into a pipe or a log file is noise. So bars are drawn only when stderr is a terminal, and
every bar is cleared when it closes, including when the work under it raises.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def on_terminal(stream: Any) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


def progress(iterable: Iterable[T], *, enabled: bool = True, **options: Any) -> Iterable[T]:
    """`iterable` wrapped in a tqdm bar (`options`: desc, unit, total), or as is when disabled."""
    stream = sys.stderr
    return tqdm(iterable, disable=not (enabled and on_terminal(stream)), leave=False, file=stream, **options)
