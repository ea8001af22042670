"""Where charforge keeps its data, and the only code allowed to turn names into file paths.

Every write goes through `Workspace`, which refuses any path that would land outside the workspace
folder (after resolving `..` and symlinks) and writes atomically, so a crash never leaves a half file
that a later cache lookup would trust.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path, PurePosixPath

from charforge.errors import InvalidInput
from charforge.files import atomic_write

log = logging.getLogger(__name__)

ENV_HOME = "CHARFORGE_HOME"
DEFAULT_DIRNAME = ".charforge"
DB_FILENAME = "charforge.db"
ASSETS_DIRNAME = "assets"

SLUG_MAX = 64
# First character alphanumeric so a name can never look like a CLI option or a hidden file.
_SLUG_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_SUFFIX_RE = re.compile(r"\.[a-z0-9]{1,8}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def validate_slug(name: object) -> str:
    """Return `name` if it is a valid character name, else raise InvalidInput saying why."""
    if not isinstance(name, str):
        raise InvalidInput(f"character name must be a string, got {type(name).__name__}")
    if not name:
        raise InvalidInput("character name is empty")
    if len(name) > SLUG_MAX:
        raise InvalidInput(f"character name is {len(name)} characters long; the limit is {SLUG_MAX}")
    if not _SLUG_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid character name {name!r}: use lowercase letters, digits, '-' and '_', "
            "starting with a letter or digit"
        )
    return name


def resolve_workspace(workspace: str | os.PathLike[str] | None = None) -> Path:
    """The workspace folder: the explicit argument, else $CHARFORGE_HOME, else ./.charforge."""
    if workspace is not None and str(workspace) != "":
        chosen = Path(workspace)
    elif os.environ.get(ENV_HOME):
        chosen = Path(os.environ[ENV_HOME])
    else:
        chosen = Path.cwd() / DEFAULT_DIRNAME
    return chosen.expanduser().resolve()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def asset_relpath(kind: str, sha256: str, suffix: str) -> PurePosixPath:
    """Content-addressed location of an asset, relative to the workspace.

    Two renders with identical bytes share one file; the two-character fan-out keeps folders small.
    """
    if not _SHA256_RE.fullmatch(sha256):
        raise InvalidInput(f"not a sha256 hex digest: {sha256!r}")
    if not _SUFFIX_RE.fullmatch(suffix):
        raise InvalidInput(f"invalid file suffix {suffix!r}: expected something like '.png'")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", kind):
        raise InvalidInput(f"invalid asset kind {kind!r}")
    return PurePosixPath(ASSETS_DIRNAME, kind, sha256[:2], sha256 + suffix)


class Workspace:
    """A folder holding `charforge.db` and `assets/`; the single gate for file writes."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = resolve_workspace(root)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    @property
    def db_path(self) -> Path:
        return self.root / DB_FILENAME

    @property
    def assets_dir(self) -> Path:
        return self.root / ASSETS_DIRNAME

    def ensure(self) -> Path:
        """Create the workspace folders if missing."""
        if self.root.exists() and not self.root.is_dir():
            raise InvalidInput(f"workspace {self.root} exists and is not a folder")
        self.assets_dir.mkdir(parents=True, exist_ok=True)
        return self.root

    def resolve(self, relpath: str | os.PathLike[str]) -> Path:
        """Absolute path of `relpath`, refusing anything that escapes the workspace (.., absolute, symlinks)."""
        rel = Path(relpath)
        if rel.is_absolute():
            raise InvalidInput(f"path {str(relpath)!r} must be relative to the workspace")
        target = (self.root / rel).resolve()
        if not target.is_relative_to(self.root):
            raise InvalidInput(f"path {str(relpath)!r} points outside the workspace {self.root}")
        return target

    def write_atomic(self, relpath: str | os.PathLike[str], data: bytes) -> Path:
        """Write `data` to `relpath` via a temp file in the same folder and an atomic rename."""
        target = self.resolve(relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        # The folder may have been a symlink created between resolve() and mkdir(); check again.
        if not target.parent.resolve().is_relative_to(self.root):
            raise InvalidInput(f"path {str(relpath)!r} points outside the workspace {self.root}")
        atomic_write(target, data)
        log.debug("wrote %d bytes to %s", len(data), target)
        return target

    def remove(self, relpath: str | os.PathLike[str]) -> bool:
        """Delete a file inside the workspace; returns whether something was removed."""
        target = self.resolve(relpath)
        try:
            target.unlink()
        except FileNotFoundError:
            return False
        return True
