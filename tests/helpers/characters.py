"""A character on the tiny model with a built identity and deterministic user masks."""

from __future__ import annotations

import numpy as np

from charforge.character.identity import build_identity
from charforge.forge import Forge

PROMPT = "portrait of a girl with red hair, blue eyes, green outfit, white background, looking calm"
STEPS = 3


def face_mask(size: int) -> np.ndarray:
    """A user face mask: the middle of the upper part of the picture."""
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[size // 8 : size // 2, size // 4 : 3 * size // 4] = 255
    return mask


def outfit_mask(size: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[3 * size // 4 :, :] = 255
    return mask


def make_character(forge: Forge, model_dir, name: str = "mira", prompt: str = PROMPT):
    """A character on the tiny model with a built identity and user face/outfit masks (deterministic regions)."""
    character = forge.create(name, prompt=prompt, seed=7, model=str(model_dir), build_identity=False)
    # the masks that matter are set below: derive the cheap ones (attention, not influence: ~10x faster)
    build_identity(character, {"steps": STEPS, "mask_method": "attention"})
    size = character.store.get_identity("base_image").tensors["pixels"].shape[0]
    character.set_mask("face", face_mask(size))
    character.set_mask("outfit", outfit_mask(size))
    return character


def forbid_model(monkeypatch) -> None:
    """Make any attempt to load or run a model fail the test (for paths that must answer from the cache)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was used")

    monkeypatch.setattr("charforge.character.edits.replay", refuse)
    monkeypatch.setattr("charforge.character.feel.character_model", refuse)
    monkeypatch.setattr("charforge.engine.cache.load_model", refuse)
