"""The repository of a workspace: every query charforge runs, as units of work over one `Database`.

`Repository` holds the cast (create, find, list, delete characters), the jobs and the asset files'
clean-up; `CharacterStore` (`repository.character(row)`) is one character's aggregate: its row,
identity artifacts, emotion history and assets. Nothing outside `charforge.store` opens a session.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from charforge.errors import AlreadyExists, IntegrityError, InvalidInput, NotFound
from charforge.faults import pause_point
from charforge.paths import Workspace, validate_slug
from charforge.store import assets, characters
from charforge.store.character_store import CharacterStore
from charforge.store.db import Database
from charforge.store.jobs import JobRepository
from charforge.store.models import CharacterRecord
from charforge.store.records import CharacterRow

log = logging.getLogger(__name__)


class Repository:
    """Queries over a workspace's database and asset folder."""

    def __init__(self, db: Database, workspace: Workspace) -> None:
        self.db = db
        self.workspace = workspace
        self.jobs = JobRepository(db)

    def character(self, row: CharacterRow) -> CharacterStore:
        """The store seen from one character, starting at the snapshot `row`."""
        return CharacterStore(self, row)

    def create_character(self, name: str, **values: Any) -> CharacterRow:
        """Insert a character row (`values`: the validated columns of `CharacterRecord`)."""
        with self.db.write() as session:
            if characters.find(session, name) is not None:
                raise AlreadyExists(f"a character named {name!r} already exists")
            rec = CharacterRecord(slug=name, **values)
            session.add(rec)
            session.flush()
            return CharacterRow.of(rec)

    def get_character(self, name: str) -> CharacterRow:
        validate_slug(name)
        with self.db.read() as session:
            row = characters.named(session, name)
        if row is None:
            raise NotFound(f"no character named {name!r}")
        return row

    def has_character(self, name: str) -> bool:
        validate_slug(name)
        with self.db.read() as session:
            return characters.find(session, name) is not None

    def list_characters(self) -> list[CharacterRow]:
        """All characters, by name."""
        with self.db.read() as session:
            return [CharacterRow.of(r) for r in characters.all_rows(session)]

    def delete_character(self, name: str) -> int:
        """Remove a character with its identity blobs, history and asset rows, and the asset files no
        other character uses; returns how many files the character had.

        One transaction, holding the write lock: the files go first and the rows are committed last, so
        a crash in between leaves the character in place with some files missing (redrawn on demand,
        and the same `delete` finishes the job), never rows pointing at nothing or a lost character.
        Only files inside `assets/` are ever touched, whatever the rows say.
        """
        validate_slug(name)
        with self.db.write() as session:
            rec = characters.find(session, name)
            if rec is None:
                raise NotFound(f"no character named {name!r}")
            paths = characters.asset_paths(session, rec.id)
            session.delete(rec)  # children go with it (ON DELETE CASCADE)
            session.flush()
            self._remove_unreferenced(session, paths)
            pause_point("delete-files-removed")
        return len(paths)

    def remove_unreferenced(self, paths: Iterable[str]) -> None:
        """Delete those of `paths` (asset files) that no asset row points to any more."""
        with self.db.write() as session:
            self._remove_unreferenced(session, paths)

    def _remove_unreferenced(self, session: Session, paths: Iterable[str]) -> None:
        """Inside a write transaction, so no other process can add a row pointing at a file between
        the check and the unlink (content-addressed files are shared between characters)."""
        paths = set(paths)
        if not paths:
            return
        used = assets.used_paths(session, paths)
        for path in sorted(paths - used):
            try:
                self.workspace.remove_asset(path)
            except (IntegrityError, InvalidInput) as exc:
                log.warning("not removing %s: %s", path, exc)
