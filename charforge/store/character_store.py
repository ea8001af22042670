"""One character's aggregate in the store: its row, identity artifacts, emotion history and assets.

A `CharacterStore` keeps the row it last read or wrote (`row`, at `row.version`). Changes to what
defines the character (prompts, seed, model, name, identity tensors) are compare-and-swap against
that version, so a process holding an old snapshot gets a `ConflictError` instead of silently
overwriting another process's change. Appends (emotion states, assets) cannot overwrite anything and
always go through. Every method is one unit of work (one session, one transaction).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Row
from sqlalchemy.orm import Session

from charforge.canonical import canonical_json
from charforge.emotion.state import EmotionState
from charforge.errors import AlreadyExists, IntegrityError, InvalidInput, NotFound
from charforge.faults import pause_point
from charforge.files import file_sha256
from charforge.paths import Workspace, asset_relpath, sha256_bytes, validate_slug
from charforge.store import artifacts, assets, characters, emotions
from charforge.store.blobs import decode_tensors, encode_tensors
from charforge.store.models import (
    AssetKind,
    AssetRecord,
    CharacterRecord,
    EmotionSource,
    IdentityKind,
    utcnow,
)
from charforge.store.records import (
    ArtifactInfo,
    Asset,
    CharacterRow,
    EmotionEntry,
    IdentityArtifact,
)
from charforge.validation import parse_enum

if TYPE_CHECKING:
    import torch
    from sqlalchemy.orm import Session

    from charforge.store.db import Database


class Repository(Protocol):
    """What a character's store uses of the workspace repository that made it (`Repository.character`);
    a Protocol, so the repository can import this module without an import circle."""

    db: Database
    workspace: Workspace

    def _remove_unreferenced(self, session: Session, paths: Iterable[str]) -> None: ...

log = logging.getLogger(__name__)

DEFAULT_SUFFIX = {AssetKind.CG: ".png", AssetKind.SPRITE: ".png", AssetKind.BGM: ".wav"}
# The columns a definition change may set (validated by the caller, e.g. through a CharacterCard).
DEFINITION = ("display_name", "base_prompt", "negative_prompt", "seed", "model_ref", "model_hash", "settings")


IdentityPut = tuple["IdentityKind | str", "Mapping[str, torch.Tensor]", str, "Mapping[str, Any] | None"]


def check_sha256(value: object, what: str) -> str:
    if not (isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
        raise InvalidInput(f"{what} must be a sha256 hex digest (64 lowercase hex characters), got {value!r}")
    return value


class CharacterStore:
    """The store seen from one character (get one from `Repository.character`)."""

    def __init__(self, repository: Repository, row: CharacterRow) -> None:
        self.repository = repository
        self.row = row

    @property
    def workspace(self) -> Workspace:
        return self.repository.workspace

    @contextmanager
    def _change(self) -> Iterator[tuple[Session, CharacterRecord]]:
        """A write of the row, provided nobody changed it since `row` (the snapshot moves on commit)."""
        with self.repository.db.write() as session:
            rec = characters.for_change(session, self.row)
            yield session, rec
            row = characters.commit_change(session, rec)
        self.row = row

    # the row ------------------------------------------------------------------------------------

    def refresh(self) -> CharacterRow:
        """Re-read the row (after another process changed it)."""
        with self.repository.db.read() as session:
            self.row = CharacterRow.of(characters.current(session, self.row))
        return self.row

    def define(self, **values: Any) -> CharacterRow:
        """Set columns of the definition (names in `DEFINITION`, values already validated)."""
        unknown = set(values) - set(DEFINITION)
        if unknown:
            raise InvalidInput(f"not part of a character's definition: {', '.join(sorted(unknown))}")
        if values.get("model_hash") is not None:
            check_sha256(values["model_hash"], "model hash")
        with self._change() as (_, rec):
            for key, value in values.items():
                setattr(rec, key, value)
        return self.row

    def rename(self, new_name: str) -> CharacterRow:
        validate_slug(new_name)
        if new_name == self.row.name:
            return self.row
        with self._change() as (session, rec):
            if characters.find(session, new_name) is not None:
                raise AlreadyExists(f"a character named {new_name!r} already exists")
            rec.slug = new_name
        return self.row

    # identity -----------------------------------------------------------------------------------

    def put_identity(
        self,
        kind: IdentityKind | str,
        tensors: Mapping[str, torch.Tensor],
        *,
        name: str = "main",
        metadata: Mapping[str, Any] | None = None,
    ) -> ArtifactInfo:
        """Store (or replace) one identity artifact as a safetensors blob with its sha256.

        `metadata` holds how it was made (method, steps, guidance, model hash) as plain JSON. An
        identity change is a change of the character (compare-and-swap, new version).
        """
        kind = parse_enum(IdentityKind, kind, "identity kind")
        validate_slug(name)
        meta = dict(metadata or {})
        canonical_json(meta)  # rejects values that are not plain JSON
        data, digest = encode_tensors(tensors)
        with self._change() as (session, rec):
            info = ArtifactInfo.of(artifacts.replace(session, rec.id, kind.value, name, data, digest, meta))
        return info

    def replace_identity(
        self,
        puts: Sequence[IdentityPut],
        *,
        remove: Sequence[tuple[IdentityKind | str, str | None]] = (),
        **definition: Any,
    ) -> list[ArtifactInfo]:
        """Write several identity artifacts, drop others and set columns of the definition, all in ONE
        transaction: a crash or an error part-way leaves the old identity whole, never a new
        trajectory beside old per-step data. `puts` are (kind, tensors, name, metadata)."""
        unknown = set(definition) - set(DEFINITION)
        if unknown:
            raise InvalidInput(f"not part of a character's definition: {', '.join(sorted(unknown))}")
        if definition.get("model_hash") is not None:
            check_sha256(definition["model_hash"], "model hash")
        encoded = []
        for kind, tensors, name, metadata in puts:
            kind = parse_enum(IdentityKind, kind, "identity kind")
            validate_slug(name)
            meta = dict(metadata or {})
            canonical_json(meta)
            encoded.append((kind.value, name, *encode_tensors(tensors), meta))
        drops = [(None if k is None else parse_enum(IdentityKind, k, "identity kind").value, n) for k, n in remove]
        with self._change() as (session, rec):
            for kind, name in drops:
                artifacts.remove(session, rec.id, kind, name)
            infos = []
            for index, (kind, name, data, digest, meta) in enumerate(encoded):
                if index:
                    pause_point("identity-partly-written")
                infos.append(ArtifactInfo.of(artifacts.replace(session, rec.id, kind, name, data, digest, meta)))
            for key, value in definition.items():
                setattr(rec, key, value)
        return infos

    def get_identity(self, kind: IdentityKind | str, *, name: str = "main") -> IdentityArtifact:
        """The artifact with its tensors; IntegrityError if the blob no longer matches its sha256."""
        kind = parse_enum(IdentityKind, kind, "identity kind")
        with self.repository.db.read() as session:
            characters.current(session, self.row)
            art = artifacts.one(session, self.row.id, kind.value, name)
            if art is None:
                raise NotFound(f"character {self.row.name!r} has no {kind.value} artifact named {name!r}")
            info, data, expected = ArtifactInfo.of(art), art.data, art.sha256
        tensors = decode_tensors(data, expected, f"{kind.value}/{name} of {self.row.name!r}")
        return IdentityArtifact(**vars(info), tensors=tensors)

    def identity(self) -> list[ArtifactInfo]:
        """All identity artifacts (without loading their tensors); NotFound once the character is deleted."""
        with self.repository.db.read() as session:
            infos = [ArtifactInfo.of(r) for r in artifacts.listing(session, self.row.id)]
            if not infos:  # a deleted character has none either (they go with it): only then is the row asked for
                characters.current(session, self.row)
            return infos

    def delete_identity(self, kind: IdentityKind | str | None = None, *, name: str | None = None) -> int:
        """Drop identity artifacts (all, all of a kind, or one); returns how many were removed."""
        value = None if kind is None else parse_enum(IdentityKind, kind, "identity kind").value
        with self.repository.db.write() as session:
            rec = characters.for_change(session, self.row)
            removed = artifacts.remove(session, rec.id, value, name)
            row = characters.commit_change(session, rec) if removed else self.row
        self.row = row
        return removed

    # emotion ------------------------------------------------------------------------------------

    def record_emotion(
        self, state: EmotionState | Mapping[str, float], *, source: EmotionSource | str = EmotionSource.API
    ) -> EmotionEntry:
        """Append a state to the history and make it the current one (an append: never a conflict).

        Afterwards `row` is the row as this append left it (whatever it was before), so a handle made
        from an older snapshot is current once it has recorded a state."""
        state = EmotionState.coerce(state)
        source = parse_enum(EmotionSource, source, "emotion source")
        intensities, digest = state.intensities(), state.canonical_hash()
        with self.repository.db.append() as conn:  # leaves `Database.stamp` alone: nothing cached changes
            row = characters.record_state(conn, self.row, intensities, digest)
            entry = emotions.append(conn, row.id, intensities, digest, source.value, row.version)
        self.row = row
        return entry

    def history(self, limit: int | None = None) -> list[EmotionEntry]:
        """Recorded states, oldest first; with `limit`, only the most recent `limit` of them."""
        if limit is not None and limit < 0:
            raise InvalidInput(f"limit must be >= 0, got {limit}")
        with self.repository.db.read() as session:
            characters.current(session, self.row)
            return [EmotionEntry.of(r) for r in emotions.recent(session, self.row.id, limit)]

    def history_count(self) -> int:
        with self.repository.db.read() as session:
            return emotions.count(session, self.row.id)

    # assets -------------------------------------------------------------------------------------

    def add_asset(
        self,
        data: bytes,
        kind: AssetKind | str,
        state_hash: str,
        params: Mapping[str, Any] | None = None,
        *,
        suffix: str | None = None,
    ) -> Asset:
        """Store rendered bytes for a state: atomic, content-addressed file plus a row keyed by `state_hash`.

        If this state already has an intact asset of this kind, that one is kept and returned (two
        processes rendering the same state at once end with one asset).
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidInput(f"asset data must be bytes, got {type(data).__name__}")
        data = bytes(data)
        kind = parse_enum(AssetKind, kind, "asset kind")
        check_sha256(state_hash, "state hash")
        params = dict(params or {})
        canonical_json(params)  # rejects values that are not plain JSON
        digest = sha256_bytes(data)
        rel = asset_relpath(kind.value, digest, suffix or DEFAULT_SUFFIX[kind])
        workspace = self.repository.workspace
        # The file is checked and written while holding the write lock: a `delete` of another character
        # sharing this content-addressed file removes unreferenced files under the same lock, so it
        # either runs before (and this write puts the file back) or sees this row and keeps the file.
        with self.repository.db.write() as session:
            rec = characters.current(session, self.row, lock=True)
            existing = assets.one(session, rec.id, kind.value, state_hash)
            kept = _asset_or_none(existing, workspace)
            if kept is not None and kept.intact():
                log.info("%s already has a %s for state %s; keeping it", self.row.name, kind.value, state_hash[:12])
                return kept
            target = workspace.asset_path(rel)
            if file_sha256(target) != digest:
                workspace.write_atomic(rel, data)
            pause_point("asset-file-written")
            # new, or replacing an asset whose file was lost, damaged or misplaced
            replaced = None if existing is None else existing.path
            row = existing or AssetRecord(character_id=rec.id, kind=kind.value, state_hash=state_hash)
            row.path, row.sha256, row.size, row.params = rel.as_posix(), digest, len(data), params
            row.created_at = utcnow()
            session.add(row)
            session.flush()
            if replaced is not None and replaced != row.path:
                self.repository._remove_unreferenced(session, [replaced])
            return Asset.of(row, workspace)

    def find_asset(self, kind: AssetKind | str, state_hash: str) -> Asset | None:
        """The stored asset for this state, or None when it must be drawn again: also when its file has
        gone missing, was modified (checked against its sha256 on every lookup, cheaply: the hash is
        cached per size and mtime) or its row points outside the assets folder."""
        kind = parse_enum(AssetKind, kind, "asset kind")
        with self.repository.db.read() as session:
            rec = assets.found(session, self.row.id, kind.value, state_hash)
            asset = self._usable(rec, kind)
        return self._checked(asset)

    def find_asset_by_identity(self, kind: AssetKind | str, key: Callable[[list[ArtifactInfo]], str]) -> Asset | None:
        """`find_asset(kind, key(identity()))` in one read: the key is made from the identity this same
        snapshot holds, and a cached answer (one per chat turn) costs one transaction instead of two."""
        kind = parse_enum(AssetKind, kind, "asset kind")
        with self.repository.db.read() as session:
            infos = [ArtifactInfo.of(r) for r in artifacts.listing(session, self.row.id)]
            if not infos:
                characters.current(session, self.row)
            rec = assets.found(session, self.row.id, kind.value, check_sha256(key(infos), "state hash"))
            asset = self._usable(rec, kind)
        return self._checked(asset)

    def _usable(self, rec: AssetRecord | Row[Any] | None, kind: AssetKind) -> Asset | None:
        asset = _asset_or_none(rec, self.repository.workspace)
        if rec is not None and asset is None:
            log.warning("the %s row of %s points outside the assets folder; drawing it again", kind, self.row.name)
        return asset

    def _checked(self, asset: Asset | None) -> Asset | None:
        if asset is not None and not asset.intact():
            problem = "was modified" if asset.path.is_file() else "is missing"
            log.warning("asset file %s of %s %s; drawing it again", asset.relpath, self.row.name, problem)
            return None
        return asset

    def assets(self, kind: AssetKind | str | None = None) -> list[Asset]:
        """All assets, oldest first, optionally of one kind."""
        value = None if kind is None else parse_enum(AssetKind, kind, "asset kind").value
        with self.repository.db.read() as session:
            characters.current(session, self.row)
            return [Asset.of(r, self.repository.workspace) for r in assets.listing(session, self.row.id, value)]


def _asset_or_none(rec: AssetRecord | Row[Any] | None, workspace: Workspace) -> Asset | None:
    """The asset of a row, or None for no row or a row whose path leaves the assets folder."""
    if rec is None:
        return None
    try:
        return Asset.of(rec, workspace)
    except (IntegrityError, InvalidInput):
        return None
