"""The attention store and reweighting inside the real sampling loop (txt2img on the tiny model)."""

from __future__ import annotations

import numpy as np
import torch

from charforge.engine.attention import AttentionControl, AttentionStore, Reweight, emphasis_weights, render_map
from charforge.engine.modes import txt2img

PROMPT = "a portrait of a smiling girl with red hair"


def test_store_is_transparent_and_records_every_step(tiny_model):
    plain = txt2img(tiny_model, PROMPT, seed=3, steps=3)
    store = AttentionStore()
    recorded = txt2img(tiny_model, PROMPT, seed=3, steps=3, hooks=[AttentionControl([store])])
    torch.testing.assert_close(recorded.pixels, plain.pixels, atol=1e-5, rtol=1e-5)
    # 14 layers (7 self + 7 cross, all at <= 16x16 latents) x 3 steps, conditional rows only
    assert len(store.records) == 42
    assert {r.step for r in store.records} == {0, 1, 2}
    assert {r.layer.place for r in store.records} == {"down", "mid", "up"}
    assert all(set(r.maps) == {0} for r in store.records)
    cross = [r for r in store.records if r.layer.is_cross]
    assert {r.maps[0].shape for r in cross} == {(256, 77), (64, 77)}


def test_word_map_renders_where_a_word_attends(tiny_model):
    store = AttentionStore(self_max_tokens=0)
    txt2img(tiny_model, PROMPT, seed=3, steps=2, hooks=[AttentionControl([store])])
    heat = store.word_map(tiny_model.tokenizer, PROMPT, "smiling")
    assert heat.shape == (16, 16) and heat.min() >= 0 and heat.max() == 1
    # it is the average over layers and steps of that column of the cross maps, rescaled
    expected = store.average_cross(0)[..., 5]
    torch.testing.assert_close(heat, expected / expected.max())
    picture = render_map(heat, (32, 32))
    assert picture.size == (32, 32) and picture.mode == "RGB"
    brightest = torch.from_numpy(np.asarray(picture.convert("L"), dtype=np.float32))
    peak = divmod(int(heat.argmax()), 16)
    assert brightest[peak[0] * 2, peak[1] * 2] >= brightest.float().mean()


def test_emphasis_reweights_plain_generation(tiny_model):
    neutral_prompt, neutral = emphasis_weights(tiny_model.tokenizer, "a portrait of a (smiling:1.0) girl")
    strong_prompt, strong = emphasis_weights(tiny_model.tokenizer, "a portrait of a (smiling:3.0) girl")
    assert neutral_prompt == strong_prompt == "a portrait of a smiling girl"
    plain = txt2img(tiny_model, neutral_prompt, seed=1, steps=2)
    same = txt2img(tiny_model, neutral_prompt, seed=1, steps=2, hooks=[AttentionControl([Reweight({None: neutral})])])
    torch.testing.assert_close(same.pixels, plain.pixels, atol=1e-5, rtol=1e-5)
    pushed = txt2img(tiny_model, strong_prompt, seed=1, steps=2, hooks=[AttentionControl([Reweight({None: strong})])])
    assert (pushed.latents - plain.latents).abs().max() > 1e-4
