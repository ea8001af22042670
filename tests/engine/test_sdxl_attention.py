"""Prompt-to-Prompt (replace, refine, reweight, local blend), MasaCtrl and the attention store on the
tiny SDXL: its transformer blocks (two per attention in the inner level, none at the outer one) and
its conditioning (pooled text, size numbers per row) go through the same processors and loop."""

from __future__ import annotations

import pytest
import torch

from charforge.engine import txt2img
from charforge.engine.attention import (
    AttentionControl,
    AttentionStore,
    LocalBlend,
    MutualSelfAttention,
    Refine,
    Replace,
    Reweight,
    unet_layers,
)

SOURCE, TARGET = "a girl with red hair", "a girl with blue hair"
SETTINGS = dict(seed=3, steps=4, guidance=7.5)
SAME, CHANGED = 1e-4, 1e-2  # float noise of other batch contents vs. an edit's effect


def _plain(model, prompts=(SOURCE, SOURCE)):
    """The same batch without control (a batch of two rounds differently from a batch of one)."""
    return txt2img(model, list(prompts), **SETTINGS)


def test_sdxl_layers_are_found(tiny_sdxl):
    layers = unet_layers(tiny_sdxl.unet).values()
    cross = [layer for layer in layers if layer.is_cross]
    assert cross and len(cross) == len(layers) / 2  # every transformer block has self + cross attention
    assert {layer.place for layer in cross} == {"down", "mid", "up"}


def test_replace_with_identical_prompts_reproduces_the_source(tiny_sdxl):
    plain = _plain(tiny_sdxl).pixels
    both = txt2img(tiny_sdxl, [SOURCE, SOURCE], hooks=[AttentionControl([Replace(tiny_sdxl.tokenizer, SOURCE, [SOURCE])])],
                   **SETTINGS).pixels  # fmt: skip
    assert (both - plain).abs().max() <= SAME


def test_replace_with_local_blend_keeps_the_source_outside_the_mask(tiny_sdxl):
    tok = tiny_sdxl.tokenizer
    blend = LocalBlend(tok, [SOURCE, TARGET], ["hair"], threshold=0.5, start=0.25)
    out = txt2img(tiny_sdxl, [SOURCE, TARGET], hooks=[AttentionControl([Replace(tok, SOURCE, [TARGET]), blend])],
                  **SETTINGS)  # fmt: skip
    assert (out.pixels[:1] - _plain(tiny_sdxl).pixels[:1]).abs().max() <= SAME  # the source row is untouched
    keep = blend.mask.reshape(1, 1, *out.latents.shape[-2:]) < 0.5
    assert keep.any() and (~keep).any()
    assert ((out.latents[1:] - out.latents[:1]).abs() * keep).max() <= SAME
    assert (out.latents[1:] - out.latents[:1]).abs().max() > CHANGED


@pytest.mark.slow
def test_refine_and_reweight_change_only_the_target(tiny_sdxl):
    tok = tiny_sdxl.tokenizer
    plain = _plain(tiny_sdxl).pixels[:1]
    longer = SOURCE + " and a cat"
    refined = txt2img(
        tiny_sdxl, [SOURCE, longer], hooks=[AttentionControl([Refine(tok, SOURCE, [longer])])], **SETTINGS
    )
    assert (refined.pixels[:1] - plain).abs().max() <= SAME
    assert (
        refined.pixels[1:] - _plain(tiny_sdxl, [SOURCE, longer]).pixels[1:]
    ).abs().max() > CHANGED  # the source's layout held
    weighted = txt2img(tiny_sdxl, [SOURCE, SOURCE], hooks=[AttentionControl([Reweight.from_words(tok, SOURCE, {"red": 4.0},
                       branch=1)])], **SETTINGS).pixels  # fmt: skip
    assert (weighted[:1] - plain).abs().max() <= SAME and (weighted[1:] - plain).abs().max() > CHANGED


@pytest.mark.slow
def test_masactrl_queries_the_source(tiny_sdxl):
    plain = _plain(tiny_sdxl, [SOURCE, TARGET]).pixels
    plain_target = plain[1:]
    out = txt2img(tiny_sdxl, [SOURCE, TARGET], hooks=[AttentionControl([MutualSelfAttention(start_step=0, start_layer=0)])],
                  **SETTINGS).pixels  # fmt: skip
    assert (out[:1] - plain[:1]).abs().max() <= SAME
    assert (out[1:] - plain_target).abs().max() > CHANGED
    late = txt2img(tiny_sdxl, [SOURCE, TARGET], hooks=[AttentionControl([MutualSelfAttention(start_step=99)])],
                   **SETTINGS).pixels  # fmt: skip
    assert (late[1:] - plain_target).abs().max() <= SAME  # never active: the target's own picture


def test_attention_store_maps_a_word_on_sdxl(tiny_sdxl):
    store = AttentionStore()
    txt2img(tiny_sdxl, SOURCE, hooks=[AttentionControl([store])], **SETTINGS)
    heat = store.word_map(tiny_sdxl.tokenizer, SOURCE, "hair")
    assert heat.ndim == 2 and torch.isfinite(heat).all() and heat.max() > heat.min()
