"""Writing a file so that no reader ever sees half of it: a temp file beside the target, then a rename.

Every file charforge writes goes through `atomic_write`. The temp file is created with mode 0o666
filtered by the process umask (0644 under the usual umask 022), like any file `open()` creates;
`tempfile.mkstemp` would have made every output 0600, unreadable to a web server or a teammate.

A writer killed between creating its temp file and the rename leaves the temp file behind. The writer
holds an exclusive `flock` on its temp file for as long as it lives, so `remove_stale_temps` (run when
a workspace is opened) can tell a dead writer's leftover (lock free) from a live writer's file (locked)
without guessing from ages.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Generic, TypeVar

from charforge.faults import pause_point

try:
    import fcntl
except ImportError:  # Windows: no flock; leftovers are recognised by age alone
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

T = TypeVar("T")

_ATTEMPTS = 32
TEMP_RE = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")
# A temp file younger than this is left alone even when unlocked: it may be between its creation and
# its writer's flock (or, without flock, still being written).
TEMP_GRACE_S = 0.5 if fcntl is not None else 3600.0


def _create_temp(target: Path) -> tuple[int, Path]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(_ATTEMPTS):
        temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(temp, flags, 0o666)
        except FileExistsError:
            continue
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        return fd, temp
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
            pause_point("atomic-write-before-rename")
            if fcntl is not None:  # rename while still holding the lock: no cleaner takes it for a leftover
                os.replace(temp, target)
        if fcntl is None:  # Windows cannot rename an open file
            os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target


def _writer_is_gone(path: Path) -> bool:
    if fcntl is None:
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a live writer holds it
    finally:
        os.close(fd)
    return True


def remove_stale_temps(root: Path) -> int:
    """Delete temp files under `root` whose writer died before renaming them; returns how many."""
    removed = 0
    now = time.time()
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if not TEMP_RE.fullmatch(name):
                continue
            path = Path(folder, name)
            try:
                if now - path.stat().st_mtime < TEMP_GRACE_S or not _writer_is_gone(path):
                    continue
                path.unlink()
            except OSError:
                continue
            removed += 1
            log.info("removed %s, left by a write that was interrupted", path)
    return removed


RACY_NS = 2_000_000_000
"""File times tick coarsely (a few ms): a file changed this recently may change again without its mtime
moving, so what was read from it is not kept (git's "racily clean" rule for its index)."""


class FileMemo(Generic[T]):
    """What `read(path)` made of a file, reused while the file keeps its inode, size and mtime.

    Serving many requests from the same few files (asset checks, a model's weights, a calibration)
    then costs a `stat` each instead of reading and parsing the file again. Errors are not kept.
    """

    def __init__(self, read: Callable[[Path], T]) -> None:
        self.read = read
        self._kept: dict[str, tuple[tuple[int, int, int], T]] = {}

    def __call__(self, path: Path) -> T:
        try:
            stat = path.stat()
        except OSError:
            return self.read(path)
        key, stamp = os.path.abspath(path), (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        hit = self._kept.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        value = self.read(path)  # stat first: a change while reading leaves a stamp that no longer matches
        if time.time_ns() - stat.st_mtime_ns > RACY_NS:
            self._kept[key] = (stamp, value)
        return value


def _sha256_of(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except (IsADirectoryError, PermissionError, FileNotFoundError):
        return None
    return digest.hexdigest()


_SHA256 = FileMemo(_sha256_of)


def file_sha256(path: Path) -> str | None:
    """sha256 of a file's bytes (None if it is not a readable file), kept per (inode, size, mtime):
    checking an asset before serving it costs a `stat` unless the file changed."""
    return _SHA256(path)
