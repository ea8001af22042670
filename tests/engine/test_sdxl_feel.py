"""`Character.feel` end to end on an SDXL model: the character's base CG, its inversion and identity
(region masks from influence heats), emotion edits through the one replay path (pooled text blended
with the token embeddings), the masked composite, and the state cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from charforge.character.edits import edit_latents, edit_mask, pixel_mask
from charforge.character.identity import build_identity, character_model, load_identity
from charforge.emotion.conditioning import conditioning, expression_table

PROMPT = "portrait of a girl with red hair, blue eyes, green outfit, white background, looking calm"


@pytest.fixture
def mira(forge, tiny_sdxl_dir):
    character = forge.create("mira", prompt=PROMPT, seed=7, model=str(tiny_sdxl_dir), build_identity=False)
    build_identity(character, {"steps": 3})
    size = character.store.get_identity("base_image").tensors["pixels"].shape[0]
    face = np.zeros((size, size), dtype=np.uint8)
    face[size // 8 : size // 2, size // 4 : 3 * size // 4] = 255
    character.set_mask("face", face)
    return character


def test_feel_runs_end_to_end_on_sdxl(mira):
    model = character_model(mira)
    assert model.family == "sdxl"
    identity = load_identity(mira, model)
    outside = ~pixel_mask(edit_mask(model, identity, expression_table()), identity.base.shape[:2]).numpy()
    assert outside.any() and not outside.all()

    joy = mira.feel(joy=0.8)
    assert not joy.cached and joy.path.is_file()
    picture = np.asarray(joy.image().convert("RGB"))
    assert np.array_equal(picture[outside], identity.base[outside])  # outside the face: the base CG
    assert not np.array_equal(picture[~outside], identity.base[~outside])  # inside: the edit
    assert mira.feel(joy=0.8).cached
    mixed = mira.feel(sadness=0.6, fear=0.3)
    assert not mixed.cached and mixed.path != joy.path


def test_sdxl_edit_rows_keep_the_base_latent_outside_the_mask(mira):
    model = character_model(mira)
    identity = load_identity(mira, model)
    table = expression_table()
    conds = [conditioning(s, mira.prompt, table) for s in ({"joy": 1.0}, {"sadness": 0.7, "fear": 0.4})]
    latents = edit_latents(model, identity, conds, table)
    cells = edit_mask(model, identity, table).bool()
    base = identity.inversion.clean_latent[0]
    torch.testing.assert_close(latents[0], base)  # the source row ends on the base CG's latent
    for row in latents[1:]:
        assert torch.equal(row[:, ~cells], base[:, ~cells])
        assert not torch.allclose(row[:, cells], base[:, cells], atol=1e-3)
