"""`Forge`: a workspace opened for use — the cast of characters, their files and background jobs."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from charforge.cards import CharacterCard
from charforge.character.handle import Character, IdentityBuilder
from charforge.errors import AlreadyExists
from charforge.paths import Workspace
from charforge.store import Database, Repository
from charforge.store.models import JobStatus
from charforge.store.records import CharacterRow, Job

if TYPE_CHECKING:
    from sqlalchemy import URL

log = logging.getLogger(__name__)

ENV_DB = "CHARFORGE_DB"  # a database URL used instead of the workspace's SQLite file


class Forge:
    """A charforge workspace: a database (SQLite in the workspace by default) plus asset files,
    created and migrated on open.

    Not fork-safe (it holds database connections): open one per process.
    """

    def __init__(
        self, workspace: Workspace, db: Database, *, identity_builder: IdentityBuilder | None = None
    ) -> None:
        self.workspace = workspace
        self.repository = Repository(db, workspace)
        self.identity_builder = identity_builder

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        db_url: str | URL | None = None,
        identity_builder: IdentityBuilder | None = None,
    ) -> Forge:
        """Open the workspace at `path` (default: $CHARFORGE_HOME, else ./.charforge), creating and
        migrating it as needed.

        `db_url` puts the database elsewhere (any SQLAlchemy URL; default: $CHARFORGE_DB, else
        `charforge.db` in the workspace). `identity_builder`, if given, is run by `create` to render
        the base CG and store the identity.
        """
        workspace = Workspace(path)
        workspace.ensure()
        db_url = db_url if db_url is not None else os.environ.get(ENV_DB) or None
        db = Database.from_url(db_url) if db_url is not None else Database(workspace.db_path)
        try:
            db.ensure_current()
        except BaseException:
            db.close()
            raise
        return cls(workspace, db, identity_builder=identity_builder)

    @property
    def db(self) -> Database:
        return self.repository.db

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Forge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Forge({str(self.workspace.root)!r})"

    # characters ---------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        prompt: str,
        negative_prompt: str = "",
        seed: int | None = None,
        model: str | None = None,
        display_name: str | None = None,
        settings: Mapping[str, Any] | None = None,
        build_identity: bool = True,
        build_options: Mapping[str, Any] | None = None,
        exist_ok: bool = False,
        progress: bool = False,
    ) -> Character:
        """Create a character. Without `seed`, one is derived from the name (stable across runs).

        With `exist_ok`, a character of that name with the same definition (prompts, seed, model,
        display name, settings) is returned as it is, so a script can run twice; one defined
        differently is still `AlreadyExists`, naming what differs (nothing is silently kept or
        overwritten).

        When the forge has an `identity_builder` and `build_identity` is true, it runs next (render the
        base CG, invert it, store the identity, with `build_options`); if it fails the character is
        removed again, so a failed create leaves nothing behind.
        """
        card = CharacterCard.build(
            name=name,
            prompt=prompt,
            negative_prompt=negative_prompt,
            seed=seed,
            model=model,
            display_name=display_name,
            settings=dict(settings or {}),
        )
        return self.create_from_card(
            card, build_identity=build_identity, build_options=build_options, exist_ok=exist_ok, progress=progress
        )

    def create_from_card(
        self,
        card: CharacterCard,
        *,
        build_identity: bool = True,
        build_options: Mapping[str, Any] | None = None,
        exist_ok: bool = False,
        progress: bool = False,
    ) -> Character:
        """`create` from a card (see there for `exist_ok`; `progress` shows the identity build's steps)."""
        try:
            row = self.repository.create_character(
                card.name, display_name=card.resolved_display_name(), base_prompt=card.prompt,
                negative_prompt=card.negative_prompt, seed=card.resolved_seed(), model_ref=card.model,
                settings=card.settings,
            )  # fmt: skip
        except AlreadyExists:
            if not exist_ok:
                raise
            return self._same_definition(card)
        character = self._handle(row)
        log.info("created character %s", card.name)
        if card.look is not None:
            self._import_look(character, card)
        if build_identity and self.identity_builder is not None:
            options = dict(build_options or {})
            if progress:
                options.setdefault("progress", True)
            try:
                self.identity_builder(character, options)
            except BaseException:
                log.warning("building the identity of %s failed; removing it", card.name)
                self.delete(card.name)
                raise
            character.refresh()
        return character

    def _same_definition(self, card: CharacterCard) -> Character:
        existing = self.get(card.name)
        wanted = {
            "display_name": card.resolved_display_name(), "prompt": card.prompt,
            "negative_prompt": card.negative_prompt, "seed": card.resolved_seed(), "model": card.model,
            "settings": card.settings,
        }  # fmt: skip
        have = existing.to_dict()
        differs = [field for field, value in wanted.items() if have[field] != value]
        if differs:
            raise AlreadyExists(
                f"a character named {card.name!r} already exists with another {', '.join(differs)}; "
                "use forge.get(name) or character.update(...)"
            )
        return existing

    def _import_look(self, character: Character, card: CharacterCard) -> None:
        """The card's embedding and LoRA become the character's look (a file that does not fit undoes the create)."""
        from charforge.character.look import import_look

        try:
            for kind, path in card.look.files():
                options = {"token": card.look.token} if kind == "embedding" else {"strength": card.look.strength}
                import_look(character, path, **options)
        except BaseException:
            self.delete(card.name)
            raise

    def get(self, name: str) -> Character:
        return self._handle(self.repository.get_character(name))

    def exists(self, name: str) -> bool:
        return self.repository.has_character(name)

    def list(self) -> list[Character]:
        """All characters, by name."""
        return [self._handle(row) for row in self.repository.list_characters()]

    def rename(self, name: str, new_name: str) -> Character:
        return self.get(name).rename(new_name)

    def delete(self, name: str) -> None:
        """Remove a character with its identity blobs, history and asset files (files other characters
        also use are kept)."""
        files = self.repository.delete_character(name)
        log.info("deleted character %s and %d asset files", name, files)

    def _handle(self, row: CharacterRow) -> Character:
        return Character(self.repository.character(row))

    # jobs (thin forwards to the repository's jobs) ------------------------------------------------

    def create_job(self, kind: str, params: Mapping[str, Any] | None = None, *, character: str | None = None) -> Job:
        """Record a unit of long work (queued); workers move it along with `update_job`."""
        return self.repository.jobs.create(kind, params, character=character)

    def update_job(
        self,
        job_id: int,
        *,
        status: JobStatus | str | None = None,
        progress: float | None = None,
        error: str | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> Job:
        """Move a job along; `result` is what it produced (plain JSON, e.g. the asset it rendered)."""
        return self.repository.jobs.update(job_id, status=status, progress=progress, error=error, result=result)

    def get_job(self, job_id: int) -> Job:
        return self.repository.jobs.get(job_id)

    def jobs(self, status: JobStatus | str | None = None) -> list[Job]:
        return self.repository.jobs.list(status)
