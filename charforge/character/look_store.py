"""A character's look in its identity: one textual-inversion token and one LoRA, read back as an engine `Look`.

Both are identity artifacts (safetensors blobs with a sha256, named "main"): the token's vectors with
its name in the metadata, the LoRA's tensors exactly as learnt or imported with its strength in the
metadata. The look's key (hash of those shas, the token name and the strength) goes into the identity
hash and is recorded on the inversion, so a new look gives new cache keys and a stale-identity error
until the identity is rebuilt with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from charforge.character.cache import look_key_of
from charforge.engine.adapters import Look
from charforge.store.models import IdentityKind

if TYPE_CHECKING:
    from charforge.character.protocol import Character

_CACHE: dict[str, Look] = {}  # look key -> look, so a render of a character already worn reads no blobs


def character_look(character: Character) -> Look | None:
    """The character's look as the engine wears it (None when it has no token and no LoRA)."""
    infos = character.store.identity()
    key = look_key_of(infos)
    if not key:
        return None
    if key not in _CACHE:
        kinds = {a.kind: a for a in infos if a.name == "main"}
        tokens, lora, strength = {}, None, 1.0
        if IdentityKind.TEXTUAL_INVERSION.value in kinds:
            art = character.store.get_identity(IdentityKind.TEXTUAL_INVERSION)
            tokens[art.metadata["token"]] = art.tensors["vectors"]
        if IdentityKind.LORA.value in kinds:
            art = character.store.get_identity(IdentityKind.LORA)
            lora, strength = art.tensors, float(art.metadata.get("strength", 1.0))
        _CACHE.clear()
        _CACHE[key] = Look(tokens, lora, strength, key=key)
    return _CACHE[key]


def character_token(character: Character) -> str | None:
    """The character's learnt or imported token, if any."""
    for info in character.store.identity():
        if info.kind == IdentityKind.TEXTUAL_INVERSION.value:
            return info.metadata.get("token")
    return None
