"""`Character`: one persistent character of a workspace, and the records it hands out.

A `Character` is a snapshot of its row plus the version it was read at. Changes to what defines the
character (prompts, seed, model, name, identity tensors) are compare-and-swap against that version, so
a process holding an old snapshot gets a `ConflictError` instead of silently overwriting another
process's change. Appends (emotion states, assets) cannot overwrite anything and always go through.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, defer
from sqlalchemy.orm.exc import StaleDataError

from charforge.canonical import canonical_hash, canonical_json
from charforge.cards import CharacterCard
from charforge.emotion import EmotionState
from charforge.errors import AlreadyExists, ConflictError, IntegrityError, InvalidInput, NotFound
from charforge.paths import asset_relpath, sha256_bytes, validate_slug
from charforge.store.blobs import decode_tensors, encode_tensors
from charforge.store.models import (
    AssetKind,
    AssetRecord,
    CharacterRecord,
    EmotionRecord,
    EmotionSource,
    IdentityArtifactRecord,
    IdentityKind,
    utcnow,
)
from charforge.validation import parse_enum

if TYPE_CHECKING:
    import torch

    from charforge.character.bgm import BGMResult
    from charforge.emotion.conditioning import Conditioning
    from charforge.character.feel import FeelResult, InpaintResult
    from charforge.forge import Forge

log = logging.getLogger(__name__)

DEFAULT_SUFFIX = {AssetKind.CG: ".png", AssetKind.SPRITE: ".png", AssetKind.BGM: ".wav"}
_UNSET: Any = object()


def _check_sha256(value: object, what: str) -> str:
    if not (isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
        raise InvalidInput(f"{what} must be a sha256 hex digest (64 lowercase hex characters), got {value!r}")
    return value


@dataclass(frozen=True)
class ArtifactInfo:
    """An identity artifact without its tensors (cheap to list)."""

    kind: str
    name: str
    sha256: str
    size: int
    metadata: dict[str, Any]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "sha256": self.sha256,
            "size": self.size,
            "metadata": self.metadata,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class IdentityArtifact(ArtifactInfo):
    """An identity artifact with its tensors, read back bit-exactly and checked against its sha256."""

    tensors: dict[str, torch.Tensor]


@dataclass(frozen=True)
class EmotionEntry:
    """One recorded state; `version` is the character version that recording produced."""

    state: EmotionState
    state_hash: str
    source: str
    version: int
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.components(),
            "state_hash": self.state_hash,
            "source": self.source,
            "version": self.version,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class Asset:
    """A rendered file of a character, addressed by its content and found again by `state_hash`."""

    kind: str
    state_hash: str
    relpath: PurePosixPath
    path: Path
    sha256: str
    size: int
    params: dict[str, Any]
    created_at: datetime

    def read_bytes(self) -> bytes:
        """The file's bytes, after checking they are still the bytes that were stored."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"asset file {self.relpath} is missing from the workspace") from None
        if sha256_bytes(data) != self.sha256:
            raise IntegrityError(f"asset file {self.relpath} was modified: its sha256 no longer matches")
        return data

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "state_hash": self.state_hash,
            "path": str(self.path),
            "relpath": self.relpath.as_posix(),
            "sha256": self.sha256,
            "size": self.size,
            "params": self.params,
            "created_at": self.created_at.isoformat(),
        }


def _artifact_info(rec: IdentityArtifactRecord) -> ArtifactInfo:
    return ArtifactInfo(rec.kind, rec.name, rec.sha256, rec.size, dict(rec.meta), rec.created_at)


def _entry(rec: EmotionRecord) -> EmotionEntry:
    return EmotionEntry(EmotionState(**rec.state), rec.state_hash, rec.source, rec.character_version, rec.created_at)


class Character:
    """A character of a workspace. Get one from `Forge.create`, `Forge.get` or `Forge.list`."""

    def __init__(self, forge: Forge, record: CharacterRecord) -> None:
        self._forge = forge
        self._take(record)

    def _take(self, rec: CharacterRecord) -> None:
        self._id = rec.id
        self._name = rec.slug
        self._display_name = rec.display_name
        self._prompt = rec.base_prompt
        self._negative_prompt = rec.negative_prompt
        self._seed = rec.seed
        self._model_ref = rec.model_ref
        self._model_hash = rec.model_hash
        self._settings = dict(rec.settings)
        self._current_state = rec.current_state
        self._version = rec.version
        self._created_at = rec.created_at
        self._updated_at = rec.updated_at

    def __repr__(self) -> str:
        return f"Character({self._name!r}, version={self._version})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Character) and other._forge is self._forge and other._id == self._id

    def __hash__(self) -> int:
        return hash((id(self._forge), self._id))

    # snapshot -----------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def display_name(self) -> str:
        return self._display_name

    @property
    def prompt(self) -> str:
        return self._prompt

    @property
    def negative_prompt(self) -> str:
        return self._negative_prompt

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def model_ref(self) -> str | None:
        """The model this character is drawn with; None means charforge's default model."""
        return self._model_ref

    @property
    def model_hash(self) -> str | None:
        """Content hash of the model the identity was made with (None until an identity exists)."""
        return self._model_hash

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self._settings)

    @property
    def version(self) -> int:
        return self._version

    @property
    def created_at(self) -> datetime:
        return self._created_at

    @property
    def updated_at(self) -> datetime:
        return self._updated_at

    @property
    def forge(self) -> Forge:
        return self._forge

    def refresh(self) -> Character:
        """Re-read the row (after another process changed it); returns self."""
        with self._forge.db.read() as session:
            self._take(self._row(session))
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self._name,
            "display_name": self._display_name,
            "prompt": self._prompt,
            "negative_prompt": self._negative_prompt,
            "seed": self._seed,
            "model": self._model_ref,
            "model_hash": self._model_hash,
            "settings": self.settings,
            "current_state": None if self._current_state is None else self.current_state().components(),
            "version": self._version,
            "created_at": self._created_at.isoformat(),
            "updated_at": self._updated_at.isoformat(),
        }

    # plumbing -----------------------------------------------------------------------------------

    def _row(self, session: Session) -> CharacterRecord:
        rec = session.get(CharacterRecord, self._id)
        if rec is None:
            raise NotFound(f"character {self._name!r} no longer exists")
        return rec

    def _row_for_change(self, session: Session) -> CharacterRecord:
        """The row, provided nobody changed it since this snapshot was read (compare-and-swap)."""
        rec = self._row(session)
        if rec.version != self._version:
            raise ConflictError(
                f"character {self._name!r} was changed by another writer (you have version {self._version}, "
                f"the store has {rec.version}); call refresh() and retry"
            )
        return rec

    def _commit_change(self, session: Session, rec: CharacterRecord) -> None:
        rec.updated_at = utcnow()
        try:
            session.flush()  # version_id_col: UPDATE ... WHERE version = old, version = old + 1
        except StaleDataError:
            raise ConflictError(f"character {self._name!r} was changed by another writer; refresh and retry") from None
        self._take(rec)

    # definition ---------------------------------------------------------------------------------

    def update(
        self,
        *,
        display_name: str = _UNSET,
        prompt: str = _UNSET,
        negative_prompt: str = _UNSET,
        seed: int = _UNSET,
        model: str | None = _UNSET,
        model_hash: str | None = _UNSET,
        settings: Mapping[str, Any] = _UNSET,
    ) -> Character:
        """Change fields of the definition; ConflictError if the character changed since this snapshot."""
        fields: dict[str, Any] = {
            "name": self._name,
            "display_name": self._display_name,
            "prompt": self._prompt,
            "negative_prompt": self._negative_prompt,
            "seed": self._seed,
            "model": self._model_ref,
            "settings": self._settings,
        }
        changes = {
            "display_name": display_name,
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "seed": seed,
            "model": model,
            "settings": settings if settings is _UNSET else dict(settings),
        }
        fields.update({key: value for key, value in changes.items() if value is not _UNSET})
        card = CharacterCard.build(**fields)
        if model_hash is not _UNSET and model_hash is not None:
            _check_sha256(model_hash, "model hash")
        with self._forge.db.write() as session:
            rec = self._row_for_change(session)
            rec.display_name = card.resolved_display_name()
            rec.base_prompt = card.prompt
            rec.negative_prompt = card.negative_prompt
            rec.seed = card.resolved_seed()
            rec.model_ref = card.model
            rec.settings = card.settings
            if model_hash is not _UNSET:
                rec.model_hash = model_hash
            self._commit_change(session, rec)
        return self

    def rename(self, new_name: str) -> Character:
        """Give the character a new name; its history, identity and assets follow."""
        validate_slug(new_name)
        if new_name == self._name:
            return self
        with self._forge.db.write() as session:
            taken = session.scalar(select(CharacterRecord.id).where(CharacterRecord.slug == new_name))
            if taken is not None:
                raise AlreadyExists(f"a character named {new_name!r} already exists")
            rec = self._row_for_change(session)
            rec.slug = new_name
            self._commit_change(session, rec)
        return self

    def delete(self) -> None:
        """Remove the character, its identity blobs, history and asset files."""
        self._forge.delete(self._name)

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

        `metadata` holds how it was made (method, steps, guidance, model hash) as plain JSON.
        """
        kind = parse_enum(IdentityKind, kind, "identity kind")
        validate_slug(name)
        meta = dict(metadata or {})
        canonical_json(meta)  # rejects values that are not plain JSON
        data, digest = encode_tensors(tensors)
        with self._forge.db.write() as session:
            rec = self._row_for_change(session)
            session.execute(
                delete(IdentityArtifactRecord).where(
                    IdentityArtifactRecord.character_id == rec.id,
                    IdentityArtifactRecord.kind == kind.value,
                    IdentityArtifactRecord.name == name,
                )
            )
            art = IdentityArtifactRecord(
                character_id=rec.id, kind=kind.value, name=name, data=data, sha256=digest, size=len(data), meta=meta
            )
            session.add(art)
            self._commit_change(session, rec)  # an identity change is a change of the character
            return _artifact_info(art)

    def get_identity(self, kind: IdentityKind | str, *, name: str = "main") -> IdentityArtifact:
        """The artifact with its tensors; IntegrityError if the blob no longer matches its sha256."""
        kind = parse_enum(IdentityKind, kind, "identity kind")
        with self._forge.db.read() as session:
            self._row(session)
            art = session.scalar(
                select(IdentityArtifactRecord).where(
                    IdentityArtifactRecord.character_id == self._id,
                    IdentityArtifactRecord.kind == kind.value,
                    IdentityArtifactRecord.name == name,
                )
            )
            if art is None:
                raise NotFound(f"character {self._name!r} has no {kind.value} artifact named {name!r}")
            info = _artifact_info(art)
            data, expected = art.data, art.sha256
        tensors = decode_tensors(data, expected, f"{kind.value}/{name} of {self._name!r}")
        return IdentityArtifact(**vars(info), tensors=tensors)

    def identity(self) -> list[ArtifactInfo]:
        """All identity artifacts (without loading their tensors)."""
        with self._forge.db.read() as session:
            self._row(session)
            rows = session.scalars(
                select(IdentityArtifactRecord)
                .options(defer(IdentityArtifactRecord.data))
                .where(IdentityArtifactRecord.character_id == self._id)
                .order_by(IdentityArtifactRecord.kind, IdentityArtifactRecord.name)
            ).all()
            return [_artifact_info(r) for r in rows]

    def delete_identity(self, kind: IdentityKind | str | None = None, *, name: str | None = None) -> int:
        """Drop identity artifacts (all, all of a kind, or one); returns how many were removed."""
        where = [IdentityArtifactRecord.character_id == self._id]
        if kind is not None:
            where.append(IdentityArtifactRecord.kind == parse_enum(IdentityKind, kind, "identity kind").value)
        if name is not None:
            where.append(IdentityArtifactRecord.name == name)
        with self._forge.db.write() as session:
            rec = self._row_for_change(session)
            removed = session.execute(delete(IdentityArtifactRecord).where(*where)).rowcount
            if removed:
                self._commit_change(session, rec)
        return removed

    def identity_hash(self) -> str:
        """One hash over everything that determines how this character is drawn (for cache keys)."""
        return canonical_hash(
            {
                "prompt": self._prompt,
                "negative_prompt": self._negative_prompt,
                "seed": self._seed,
                "model_hash": self._model_hash,
                "artifacts": sorted((a.kind, a.name, a.sha256) for a in self.identity()),
            }
        )

    # emotion ------------------------------------------------------------------------------------

    def record_emotion(
        self, state: EmotionState | Mapping[str, float], *, source: EmotionSource | str = EmotionSource.API
    ) -> EmotionEntry:
        """Append a state to the history and make it the current one."""
        state = state if isinstance(state, EmotionState) else EmotionState.from_mapping(state)
        source = parse_enum(EmotionSource, source, "emotion source")
        with self._forge.db.write() as session:
            rec = self._row(session)
            rec.current_state = state.intensities()
            rec.current_state_hash = state.canonical_hash()
            self._commit_change(session, rec)
            row = EmotionRecord(
                character_id=rec.id,
                state=state.intensities(),
                state_hash=rec.current_state_hash,
                source=source.value,
                character_version=rec.version,
            )
            session.add(row)
            session.flush()
            return _entry(row)

    def current_state(self) -> EmotionState:
        """The last recorded state (as of this snapshot), neutral if none was recorded."""
        if self._current_state is None:
            return EmotionState.neutral()
        return EmotionState(**self._current_state)

    def history(self, limit: int | None = None) -> list[EmotionEntry]:
        """Recorded states, oldest first; with `limit`, only the most recent `limit` of them."""
        if limit is not None and limit < 0:
            raise InvalidInput(f"limit must be >= 0, got {limit}")
        with self._forge.db.read() as session:
            self._row(session)
            query = select(EmotionRecord).where(EmotionRecord.character_id == self._id).order_by(EmotionRecord.id.desc())
            if limit is not None:
                query = query.limit(limit)
            rows = session.scalars(query).all()
            return [_entry(r) for r in reversed(rows)]

    def history_count(self) -> int:
        with self._forge.db.read() as session:
            return session.scalar(select(func.count()).where(EmotionRecord.character_id == self._id)) or 0

    # assets -------------------------------------------------------------------------------------

    def _asset(self, rec: AssetRecord) -> Asset:
        rel = PurePosixPath(rec.path)
        return Asset(
            rec.kind,
            rec.state_hash,
            rel,
            self._forge.workspace.resolve(rel),
            rec.sha256,
            rec.size,
            dict(rec.params),
            rec.created_at,
        )

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
        _check_sha256(state_hash, "state hash")
        params = dict(params or {})
        canonical_json(params)  # rejects values that are not plain JSON
        digest = sha256_bytes(data)
        rel = asset_relpath(kind.value, digest, suffix or DEFAULT_SUFFIX[kind])
        workspace = self._forge.workspace
        target = workspace.resolve(rel)
        if not (target.is_file() and sha256_bytes(target.read_bytes()) == digest):
            workspace.write_atomic(rel, data)
        orphan: str | None = None
        with self._forge.db.write() as session:
            rec = self._row(session)
            existing = session.scalar(
                select(AssetRecord).where(
                    AssetRecord.character_id == rec.id, AssetRecord.kind == kind.value, AssetRecord.state_hash == state_hash
                )
            )
            if existing is not None and self._intact(existing):
                log.info("%s already has a %s for state %s; keeping it", self._name, kind.value, state_hash[:12])
                orphan = None if existing.path == rel.as_posix() else rel.as_posix()
                result = self._asset(existing)
            else:  # new, or replacing an asset whose file was lost or damaged
                row = existing or AssetRecord(character_id=rec.id, kind=kind.value, state_hash=state_hash)
                row.path, row.sha256, row.size, row.params = rel.as_posix(), digest, len(data), params
                row.created_at = utcnow()
                session.add(row)
                session.flush()
                result = self._asset(row)
        if orphan is not None:
            self._forge._remove_unreferenced([orphan])
        return result

    def _intact(self, rec: AssetRecord) -> bool:
        path = self._forge.workspace.resolve(rec.path)
        return path.is_file() and sha256_bytes(path.read_bytes()) == rec.sha256

    def find_asset(self, kind: AssetKind | str, state_hash: str) -> Asset | None:
        """The stored asset for this state, or None (also when its file has gone missing)."""
        kind = parse_enum(AssetKind, kind, "asset kind")
        with self._forge.db.read() as session:
            rec = session.scalar(
                select(AssetRecord).where(
                    AssetRecord.character_id == self._id, AssetRecord.kind == kind.value, AssetRecord.state_hash == state_hash
                )
            )
            asset = None if rec is None else self._asset(rec)
        if asset is not None and not asset.path.is_file():
            log.warning("asset file %s of %s is missing; treating as not rendered", asset.relpath, self._name)
            return None
        return asset

    def assets(self, kind: AssetKind | str | None = None) -> list[Asset]:
        """All assets, oldest first, optionally of one kind."""
        where = [AssetRecord.character_id == self._id]
        if kind is not None:
            where.append(AssetRecord.kind == parse_enum(AssetKind, kind, "asset kind").value)
        with self._forge.db.read() as session:
            self._row(session)
            return [self._asset(r) for r in session.scalars(select(AssetRecord).where(*where).order_by(AssetRecord.id))]

    # pictures -----------------------------------------------------------------------------------
    # The verbs that run the model live in charforge.character.feel / .identity / .bgm (imported on use:
    # the store must not pay for torch and diffusers).

    def feel(
        self, state: EmotionState | Mapping[str, float] | None = None, /, *, record: bool = True, **intensities: float
    ) -> FeelResult:
        """This character's CG for a state, e.g. `mira.feel(joy=0.8)`: rendered once, then served from the cache.

        With `record` the state also becomes the current one. See `charforge.character.feel.feel`.
        """
        from charforge.character.feel import feel

        return feel(self, state, record=record, **intensities)

    def bgm(
        self, state: EmotionState | Mapping[str, float] | None = None, /, *, seconds: float = 10.0, **options: Any
    ) -> BGMResult:
        """This character's music for a state (default: its current one), e.g. `mira.bgm(seconds=20)`.

        Rendered once per mood plan, then served from the cache. See `charforge.character.bgm.bgm`.
        """
        from charforge.character.bgm import bgm

        return bgm(self, state, seconds=seconds, **options)

    def bgm_transition(self, to_state: EmotionState | Mapping[str, float], /, **options: Any) -> BGMResult:
        """One continuous piece moving from the current mood (or `from_state=`) to `to_state`."""
        from charforge.character.bgm import bgm_transition

        return bgm_transition(self, to_state, **options)

    def explain(self, state: EmotionState | Mapping[str, float]) -> Conditioning:
        """What `state` becomes for this character: phrases, blend and attention weights (no rendering)."""
        from charforge.character.feel import explain

        return explain(self, state)

    def inpaint(self, region: Any, prompt: str, *, adopt: bool = False, **options: Any) -> InpaintResult:
        """Redraw one region ("outfit" or a mask picture) of the base CG; `adopt` makes it the new base."""
        from charforge.character.feel import inpaint

        return inpaint(self, region, prompt, adopt=adopt, **options)

    def reinvert(self, *, rerender: bool = False, **options: Any) -> Character:
        """Rebuild the identity with the current model (after a model change: see StaleIdentity)."""
        from charforge.character.identity import reinvert

        reinvert(self, rerender=rerender, **options)
        return self

    def set_mask(self, name: str, mask: Any) -> None:
        """Store a user-drawn region mask (white = inside), replacing the one derived from the words."""
        from charforge.character.identity import set_mask

        set_mask(self, name, mask)


IdentityBuilder = Callable[[Character, Mapping[str, Any]], None]
"""Called by `Forge.create` after the row exists, to render the base CG and store the identity."""
