"""The repository of a workspace: every query charforge runs, as units of work over one `Database`.

`Repository` holds the cast (create, find, list, delete characters), the jobs and the asset files'
clean-up; `CharacterStore` (`repository.character(row)`) is one character's aggregate: its row,
identity artifacts, emotion history and assets. Nothing outside `charforge.store` opens a session.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from charforge.errors import AlreadyExists, NotFound
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
            rec = characters.find(session, name)
            if rec is None:
                raise NotFound(f"no character named {name!r}")
            return CharacterRow.of(rec)

    def has_character(self, name: str) -> bool:
        validate_slug(name)
        with self.db.read() as session:
            return characters.find(session, name) is not None

    def list_characters(self) -> list[CharacterRow]:
        """All characters, by name."""
        with self.db.read() as session:
            return [CharacterRow.of(r) for r in characters.all_rows(session)]

    def delete_character(self, name: str) -> int:
        """Remove a character with its identity blobs, history and asset rows, then the asset files no
        other character uses; returns how many files the character had."""
        validate_slug(name)
        with self.db.write() as session:
            rec = characters.find(session, name)
            if rec is None:
                raise NotFound(f"no character named {name!r}")
            paths = characters.asset_paths(session, rec.id)
            session.delete(rec)  # children go with it (ON DELETE CASCADE)
        self.remove_unreferenced(paths)
        return len(paths)

    def remove_unreferenced(self, paths: Iterable[str]) -> None:
        """Delete those of `paths` (workspace-relative files) that no asset row points to any more."""
        paths = set(paths)
        if not paths:
            return
        with self.db.read() as session:
            used = assets.used_paths(session, paths)
        for path in sorted(paths - used):
            self.workspace.remove(path)
