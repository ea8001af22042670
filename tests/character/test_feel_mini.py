"""Emotion edits on the shipped portrait model: properties a random VAE cannot show (skips until it ships)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from charforge.character.edits import decode_pictures, edit_latents, edit_mask, pixel_mask
from charforge.character.identity import build_identity, character_model, load_identity
from charforge.emotion.conditioning import conditioning, expression_table
from charforge.forge import Forge
from charforge.recipes.portrait_mini import render

PROMPT = "portrait of a girl with long red hair, green eyes, fair skin, blue outfit, pink background, looking calm"

pytestmark = pytest.mark.slow  # renders with the shipped model


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float((((a.astype(np.float64) - b.astype(np.float64)) / 255.0) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def test_raw_edits_keep_the_rest_of_the_picture_and_change_the_face(mini_model, tmp_path):
    with Forge.open(tmp_path, identity_builder=build_identity) as forge:
        mira = forge.create("mira", prompt=PROMPT, seed=7, build_options={"steps": 10})
        model = character_model(mira)
        identity = load_identity(mira, model)
        table = expression_table()
        cells = edit_mask(model, identity, table)
        inside = pixel_mask(cells, identity.base.shape[:2]).numpy()
        # the derived face mask covers most of the renderer's exact face and is not the whole picture
        truth = render.render(render.portrait_from_caption(PROMPT))[1]["face"]
        assert (inside & truth).sum() >= 0.6 * truth.sum() and inside.mean() < 0.6
        conds = [conditioning(s, PROMPT, table) for s in ({"joy": 1.0}, {"anger": 1.0})]
        raw = decode_pictures(model, edit_latents(model, identity, conds, table)[1:])  # no pixel pasting
        for picture in raw:
            assert _psnr(picture[~inside], identity.base[~inside]) >= 35.0
            assert np.abs(picture[inside].astype(int) - identity.base[inside].astype(int)).mean() > 2.0
