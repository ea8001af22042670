"""`PictureIndex`: a server's cached pictures answered from memory while the database is unchanged.

A chat front end sends a state per turn and most of them are drawn already. Found through the
store, each such answer reads the character's row, its identity listing and the asset's row, and
works the state's conditioning and cache key out again: milliseconds of a server's CPU per turn,
which the other clients queue for. The index keeps those answers in memory instead: characters by
name, identity listings by character, and pictures by (identity hash, expression settings, model
hash, model family, state), the key's own inputs.

All three are dropped at once whenever `Database.stamp` moves, that is whenever anything but this
process's emotion-history appends was committed, by any connection of any process: a new identity,
an edited prompt, a renamed or deleted character, a new or replaced asset. What the key takes from
files is asked again on every call, at the price of a few `stat`s: the model's weights hash, its
family and its calibration (kept by `FileMemo`s), and the picture file itself (its sha256, per size
and mtime). So a cached answer is the one `cached_picture` would give, without a query. A database
that cannot tell whether it changed (no stamp: not SQLite) always takes the full path.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from charforge.canonical import canonical_json
from charforge.character.cache import FeelResult, cached_picture, identity_hash, state_key
from charforge.character.expressions import character_table, model_calibration, model_family
from charforge.character.handle import Character
from charforge.emotion.conditioning import conditioning
from charforge.models import weights_hash
from charforge.store.models import AssetKind, EmotionSource

if TYPE_CHECKING:
    from charforge.emotion import EmotionState
    from charforge.store import Repository
    from charforge.store.records import ArtifactInfo, CharacterRow

V = TypeVar("V")
DEFAULT_SIZE = 4096  # pictures kept; past that the oldest go first


class PictureIndex:
    """The cached answers of one workspace (thread-safe: one per server, shared by its request threads)."""

    def __init__(self, repository: Repository, *, size: int = DEFAULT_SIZE) -> None:
        self.repository = repository
        self.size = size
        self._lock = threading.Lock()
        self._epoch: Hashable | None = None  # the stamp everything below was read under
        self._rows: dict[str, CharacterRow] = {}
        self._listings: dict[int, list[ArtifactInfo]] = {}
        self._pictures: dict[Hashable, tuple[Any, FeelResult]] = {}

    def record(self, name: str, state: EmotionState, *, source: EmotionSource | str = EmotionSource.API) -> Character:
        """`forge.get(name).record_emotion(state)` without reading the row first while nothing changed: the
        append reads (and returns) it anyway, so the handle returned is as current as a fresh one."""
        stamp = self._sync()
        row = self._rows.get(name) if stamp is not None else None
        if row is None:
            row = self.repository.get_character(name)
            self._keep(self._rows, name, row, stamp)
        character = Character(self.repository.character(row))
        character.record_emotion(state, source=source)
        return character

    def picture(self, character: Character, state: EmotionState) -> FeelResult | None:
        """`cached_picture(character, state)`, from memory when this key was answered before."""
        stamp = self._sync()
        model_hash = weights_hash(character.model_ref)
        if stamp is None or model_hash is None:
            return cached_picture(character, state)
        listing = self._listings.get(character.store.row.id)
        if listing is None:
            listing = character.store.identity()
            self._keep(self._listings, character.store.row.id, listing, stamp)
        family = model_family(character.model_ref)
        calibration = model_calibration(character, model_hash)
        # everything the key is made of: the character's identity and table overrides, the model, the state
        key = (
            identity_hash(character, listing),
            canonical_json(character.settings.get("expressions")),
            model_hash,
            family,
            tuple(sorted(state.intensities().items())),
        )
        hit = self._pictures.get(key)
        if hit is not None and hit[0] is calibration and hit[1].asset.intact():
            return hit[1]
        # the full lookup, from the very inputs the key was made of
        table = character_table(character, family)
        cond = conditioning(state, character.prompt, table, calibration)
        asset = character.store.find_asset(AssetKind.CG, state_key(character, cond, model_hash, table, listing))
        if asset is None:
            return None
        found = FeelResult(asset, cond.state, cond, cached=True)
        self._keep(self._pictures, key, (calibration, found), stamp)
        return found

    def _sync(self) -> Hashable | None:
        """The database's stamp now; everything kept under another one is dropped first."""
        stamp = self.repository.db.stamp()
        with self._lock:
            if stamp != self._epoch:
                self._rows.clear()
                self._listings.clear()
                self._pictures.clear()
                self._epoch = stamp
        return stamp

    def _keep(self, table: dict[Any, V], key: Hashable, value: V, stamp: Hashable | None) -> None:
        """Keep what was read after `stamp` was taken, unless the database moved on meanwhile (then what
        was read may predate the change, and the next `_sync` drops the rest anyway)."""
        with self._lock:
            if stamp is None or stamp != self._epoch:
                return
            if len(table) >= self.size:
                table.pop(next(iter(table)))
            table[key] = value

