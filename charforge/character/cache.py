"""What a state becomes for a character, and the cache of its pictures: keys and lookups, without torch.

A picture is stored under a canonical hash of (identity, quantised state, model hash, conditioning
and edit parameters). Everything that hash needs is in SQLite, the emotion tables and the weight
files' hash, so asking for a state already drawn is answered here without importing torch,
diffusers or the engine: `charforge emote` of a cached state costs about as much as `--version`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import PIL.Image

from charforge.canonical import canonical_hash
from charforge.character.expressions import character_table, model_calibration
from charforge.emotion import EmotionState
from charforge.emotion.conditioning import Conditioning, ExpressionTable, conditioning
from charforge.models import weights_hash
from charforge.store.models import AssetKind, IdentityKind
from charforge.store.records import ArtifactInfo, Asset

if TYPE_CHECKING:
    from charforge.character.protocol import Character

KEY_VERSION = 1  # bump when the rendering changes in a way the parameters do not show


LOOK_KINDS = (IdentityKind.TEXTUAL_INVERSION.value, IdentityKind.LORA.value)


def look_key_of(infos: Sequence[ArtifactInfo]) -> str:
    """The key of the look (token, LoRA) among a character's identity listing; "" when it has none.

    The token's name and the LoRA's strength are in it, not only the blobs' shas: both change the picture.
    """
    parts = sorted(
        (a.kind, a.name, a.sha256, a.metadata.get("token"), a.metadata.get("strength"))
        for a in infos
        if a.kind in LOOK_KINDS
    )
    return canonical_hash({"look": [list(p) for p in parts]}) if parts else ""


def identity_hash(character: Character, infos: Sequence[ArtifactInfo] | None = None) -> str:
    """One hash over everything that determines how this character is drawn (for cache keys);
    `infos`: its identity listing when the caller has read it already."""
    infos = character.store.identity() if infos is None else infos
    look = look_key_of(infos)  # only when there is one: the keys of identities without a look stay as they were
    return canonical_hash(
        {
            "prompt": character.prompt,
            "negative_prompt": character.negative_prompt,
            "seed": character.seed,
            "model_hash": character.model_hash,
            "artifacts": sorted((a.kind, a.name, a.sha256) for a in infos),
            **({"look": look} if look else {}),
        }
    )


@dataclass(frozen=True)
class FeelResult:
    """A picture of a state: the stored asset, the (quantised) state and what it was conditioned on."""

    asset: Asset
    state: EmotionState
    conditioning: Conditioning
    cached: bool

    @property
    def path(self) -> Path:
        return self.asset.path

    @property
    def key(self) -> str:
        return self.asset.state_hash

    def image(self) -> PIL.Image.Image:
        return PIL.Image.open(io.BytesIO(self.asset.read_bytes()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.asset.path),
            "hash": self.asset.state_hash,
            "state": self.state.components(),
            "dominant": self.state.dominant,
            "cached": self.cached,
            "conditioning": self.conditioning.to_dict(),
        }


def edit_params(table: ExpressionTable) -> dict[str, Any]:
    return table.edit.model_dump()


def state_key(
    character: Character,
    cond: Conditioning,
    model_hash: str,
    table: ExpressionTable,
    infos: Sequence[ArtifactInfo] | None = None,
) -> str:
    """The cache key of a state's picture: same identity, state, model and parameters -> same key."""
    return canonical_hash(
        {
            "what": "feel",
            "version": KEY_VERSION,
            "identity": identity_hash(character, infos),
            "state": cond.state.intensities(),
            "model": model_hash,
            "conditioning": cond.to_dict(),
            "edit": edit_params(table),
        }
    )


def state_conditioning(
    character: Character, state: EmotionState | Mapping[str, float]
) -> tuple[ExpressionTable, Conditioning]:
    """The expression table of the character's model family and what `state` becomes under it (with the
    model's calibration): the one place a state turns into phrases, for keys, renders and `explain`."""
    table = character_table(character)
    return table, conditioning(EmotionState.coerce(state), character.prompt, table, model_calibration(character))


def explain(character: Character, state: EmotionState | Mapping[str, float]) -> Conditioning:
    """What `state` becomes for this character (after quantisation, its overrides and the calibration)."""
    return state_conditioning(character, state)[1]


def cached_picture(character: Character, state: EmotionState) -> FeelResult | None:
    """The stored picture of `state`, or None when it must be drawn (or the model's hash needs the model).

    The same key `Character.feel` uses; None for a model only known by a hub id, whose hash is only
    known once it is loaded.
    """
    model_hash = weights_hash(character.model_ref)
    if model_hash is None:
        return None
    table, cond = state_conditioning(character, state)
    asset = character.store.find_asset_by_identity(
        AssetKind.CG, lambda infos: state_key(character, cond, model_hash, table, infos)
    )
    return None if asset is None else FeelResult(asset, cond.state, cond, cached=True)

