"""Writing a file so that no reader ever sees half of it: a temp file beside the target, then a rename.

Every file charforge writes goes through `atomic_write`. The temp file is created with mode 0o666
filtered by the process umask (0644 under the usual umask 022), like any file `open()` creates;
`tempfile.mkstemp` would have made every output 0600, unreadable to a web server or a teammate.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_ATTEMPTS = 32


def _create_temp(target: Path) -> tuple[int, Path]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(_ATTEMPTS):
        temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {target}")


def atomic_write(path: str | os.PathLike[str], data: bytes | Callable[[BinaryIO], object]) -> Path:
    """Write `data` (bytes, or a function writing to a binary stream) to `path`, all or nothing.

    The folder must exist. On any error the temp file is removed and the old file, if any, is left as it was.
    """
    target = Path(path)
    fd, temp = _create_temp(target)
    try:
        with os.fdopen(fd, "wb") as stream:
            if callable(data):
                data(stream)
            else:
                stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target
