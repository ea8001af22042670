"""The controlled attention processor on a bare tiny UNet: transparent when idle, exact when editing."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_tokenizer

from charforge.engine.attention import (
    AttentionControl,
    AttentionStore,
    Controller,
    MutualSelfAttention,
    Replace,
    Reweight,
    RowMap,
    unet_layers,
)
from charforge.engine.attention.control import ControlledAttnProcessor
from charforge.engine.hooks import BatchLayout, StepContext
from charforge.engine.modes import txt2img


@pytest.fixture(scope="module")
def unet(tiny_model):
    return tiny_model.unet  # shared: every call below restores its processors


def _inputs(rows: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(rows, 4, 16, 16, generator=g)
    text = torch.randn(rows, 77, 32, generator=g)
    return sample, text


def _run(unet, control: AttentionControl | None, sample, text, layout: BatchLayout | None = None, step: int = 0, steps: int = 4):
    """One UNet call with `control` installed as the loop would install it (and always restored)."""
    original = dict(unet.attn_processors)
    if control is not None:
        ctx = StepContext(
            index=0, timestep=torch.tensor(500), num_steps=steps, latents=sample[: len(layout.cond_rows)] if layout else sample,
            scheduler=None, prediction_type="epsilon", guidance_scale=7.5 if layout and layout.uncond_rows else 1.0,
        )
        control.on_begin(ctx)
        ctx.index, ctx.layout = step, layout
        unet.set_attn_processor({**original, **control.attention_processors(unet)})
    try:
        with torch.no_grad():
            return unet(sample, 500, encoder_hidden_states=text).sample
    finally:
        unet.set_attn_processor(original)


def test_layers_are_in_execution_order(unet):
    layers = unet_layers(unet)
    ordered = sorted(layers.values(), key=lambda layer: (layer.is_cross, layer.index))
    places = [layer.place for layer in ordered if not layer.is_cross]
    assert places == sorted(places, key=("down", "mid", "up").index)
    assert places.count("mid") == 1 and len(places) == 7  # 2 down, 1 mid, 4 up in the tiny UNet
    assert {layer.count for layer in layers.values()} == {7}


@pytest.mark.parametrize("layout", [BatchLayout((), (0, 1)), BatchLayout((0, 1), (0, 1))], ids=["cond", "guided"])
def test_pass_through_store_matches_default_processor(unet, layout):
    sample, text = _inputs(layout.size)
    reference = _run(unet, None, sample, text)
    store = AttentionStore(cross_max_tokens=16 * 16, self_max_tokens=16 * 16)
    recorded = _run(unet, AttentionControl([store]), sample, text, layout)
    torch.testing.assert_close(recorded, reference, atol=1e-5, rtol=1e-5)
    # every layer was seen, both kinds, per branch (conditional rows only), with rows summing to one
    assert len({r.layer.name for r in store.records}) == 14
    assert all(set(r.maps) == {0, 1} for r in store.records)
    for record in store.records:
        for value in record.maps.values():
            torch.testing.assert_close(value.sum(-1), torch.ones(value.shape[0]), atol=1e-4, rtol=0)


class _Recorder(Controller):
    def __init__(self):
        self.calls = 0

    def wants_probs(self, layer, step, layout, tokens):
        return False

    def attend(self, *args):
        self.calls += 1
        return None


def test_idle_controller_is_bit_exact(unet):
    sample, text = _inputs(2)
    reference = _run(unet, None, sample, text)
    recorder = _Recorder()
    out = _run(unet, AttentionControl([recorder]), sample, text, BatchLayout((), (0, 1)))
    assert recorder.calls == 14
    assert torch.equal(out, reference)


def test_processors_restored_after_a_loop_call_also_one_that_raised(tiny_model):
    class Boom(Controller):
        def __init__(self, at_step):
            self.at_step = at_step

        def attend(self, layer, step, *args):
            if step == self.at_step and layer.place == "up":
                raise RuntimeError("boom")
            return None

    before = dict(tiny_model.unet.attn_processors)
    txt2img(tiny_model, "a girl", steps=2, hooks=[AttentionControl([Boom(at_step=99)])])
    assert dict(tiny_model.unet.attn_processors) == before
    with pytest.raises(RuntimeError, match="boom"):
        txt2img(tiny_model, "a girl", steps=2, hooks=[AttentionControl([Boom(at_step=1)])])
    after = dict(tiny_model.unet.attn_processors)
    assert after == before and not any(isinstance(p, ControlledAttnProcessor) for p in after.values())


class _AfterEdits(Controller):
    """Records the probabilities the values are multiplied with (after every editor)."""

    stage = 9

    def __init__(self):
        self.cross: list[torch.Tensor] = []

    def wants_probs(self, layer, step, layout, tokens):
        return layer.is_cross

    def edit_probs(self, layer, step, layout, probs):
        self.cross.append(probs.clone())
        return probs


def test_replace_gives_the_target_the_source_cross_attention(unet):
    tokenizer = build_tiny_tokenizer()
    source, target = "a portrait of a smiling girl", "a portrait of a crying girl"
    sample, _ = _inputs(2)
    text = torch.randn(2, 77, 32, generator=torch.Generator().manual_seed(3))
    after = _AfterEdits()
    edit = Replace(tokenizer, source, [target], cross_replace_steps=1.0, self_replace_steps=0.0)
    _run(unet, AttentionControl([edit, after]), sample, text, BatchLayout((), (0, 1)))
    assert len(after.cross) == 7
    for probs in after.cross:  # one-token words: the mapping is the identity
        torch.testing.assert_close(probs[1], probs[0])
    # outside the cross-replace window the target keeps its own maps
    after_late = _AfterEdits()
    edit_late = Replace(tokenizer, source, [target], cross_replace_steps=0.5, self_replace_steps=0.0)
    _run(unet, AttentionControl([edit_late, after_late]), sample, text, BatchLayout((), (0, 1)), step=3)
    assert all((p[1] - p[0]).abs().max() > 1e-3 for p in after_late.cross)


def test_replace_with_identical_prompts_and_latents_keeps_rows_equal(unet):
    tokenizer = build_tiny_tokenizer()
    prompt = "a portrait of a girl with red hair"
    sample, text = _inputs(1)
    batch, texts = torch.cat([sample, sample]), torch.cat([text, text])
    edit = Replace(tokenizer, prompt, [prompt], cross_replace_steps=1.0, self_replace_steps=1.0)
    out = _run(unet, AttentionControl([edit]), batch, texts, BatchLayout((), (0, 1)))
    reference = _run(unet, None, sample, text)
    torch.testing.assert_close(out[0], reference[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1], reference[0], atol=1e-5, rtol=1e-5)


def test_reweight_of_one_changes_nothing_and_other_weights_do(unet):
    tokenizer = build_tiny_tokenizer()
    sample, text = _inputs(1)
    reference = _run(unet, None, sample, text)
    layout = BatchLayout((), (0,))
    same = _run(unet, AttentionControl([Reweight.from_words(tokenizer, "a smiling girl", {"smiling": 1.0})]), sample, text, layout)
    torch.testing.assert_close(same, reference, atol=1e-5, rtol=1e-5)
    more = _run(unet, AttentionControl([Reweight.from_words(tokenizer, "a smiling girl", {"smiling": 3.0})]), sample, text, layout)
    assert (more - reference).abs().max() > 1e-4


def test_fast_paths_equal_the_materialised_maps(unet):
    """Copying q/k (replace) and scaling values (reweight) must equal editing the probabilities."""
    tokenizer = build_tiny_tokenizer()
    source, target = "a portrait of a smiling girl", "a portrait of a crying girl"
    sample, _ = _inputs(2)
    text = torch.randn(2, 77, 32, generator=torch.Generator().manual_seed(3))
    layout = BatchLayout((), (0, 1))

    def replace():
        return Replace(tokenizer, source, [target], cross_replace_steps=1.0, self_replace_steps=0.0)

    fast = replace()
    slow = replace()
    exact = slow.align
    slow.align = lambda chunks: [False for _ in exact(chunks)]  # forces the explicit source_probs @ mapper path
    slow.plan(4, 1)
    assert bool(fast.cross_copy.all()) and not bool(slow.cross_copy.any())
    torch.testing.assert_close(
        _run(unet, AttentionControl([fast]), sample, text, layout),
        _run(unet, AttentionControl([slow]), sample, text, layout),
        atol=1e-5, rtol=1e-5,
    )

    class ProbsReweight(Controller):
        stage = 2

        def __init__(self, weights):
            self.weights = weights

        def wants_probs(self, layer, step, layout, tokens):
            return layer.is_cross

        def edit_probs(self, layer, step, layout, probs):
            return probs * self.weights

    weights = torch.ones(77)
    weights[5] = 2.5
    by_values = _run(unet, AttentionControl([Reweight({None: weights})]), sample, text, layout)
    by_probs = _run(unet, AttentionControl([ProbsReweight(weights)]), sample, text, layout)
    torch.testing.assert_close(by_values, by_probs, atol=1e-5, rtol=1e-5)


def test_masactrl_copies_source_appearance_and_is_idle_before_start(unet):
    sample, text = _inputs(2)
    layout = BatchLayout((), (0, 1))
    free = _run(unet, None, sample, text)
    late = _run(unet, AttentionControl([MutualSelfAttention(start_step=3, start_layer=0)]), sample, text, layout, step=2)
    assert torch.equal(late, free)
    mutual = _run(unet, AttentionControl([MutualSelfAttention(start_step=0, start_layer=0)]), sample, text, layout)
    torch.testing.assert_close(mutual[0], free[0], atol=1e-5, rtol=1e-5)  # the source is never changed
    assert (mutual[1] - free[1]).abs().max() > 1e-4
    # an all-foreground mask is the same as no mask
    masked = _run(
        unet, AttentionControl([MutualSelfAttention(start_step=0, start_layer=0, mask=torch.ones(16, 16))]), sample, text, layout
    )
    torch.testing.assert_close(masked, mutual, atol=1e-5, rtol=1e-5)


def test_row_map_follows_the_loop_layout():
    rows = RowMap.from_layout(BatchLayout(uncond_rows=(1,), cond_rows=(0, 1)))
    assert rows.branch == (1, 0, 1) and rows.cond == (False, True, True)
    assert rows.pairs(cond=True) == [(1, 2, 1)]
    assert rows.pairs(cond=False) == []  # the source has no unconditional row here
