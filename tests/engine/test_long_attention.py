"""Attention control over prompts longer than 77 tokens: the conditioning is chunks of 77 columns side
by side (BOS, 75 tokens, EOS, padding each), so a word past token 75 sits in the second chunk's
columns, and reweight, replace and refine must address it there, for SD and SDXL alike.

Where a word lands is checked against the encoder itself: changing one word of a prompt changes its
hidden state and, CLIP being causal, every later one of its chunk, never an earlier column.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_WORDS, build_tiny_tokenizer

from charforge.engine import txt2img
from charforge.engine.attention import (
    AttentionControl,
    AttentionStore,
    LocalBlend,
    Refine,
    Replace,
    Reweight,
    emphasis_weights,
    word_columns,
)
from charforge.engine.attention.tokens import chunk_count, max_columns, replacement_mapper, token_column
from charforge.engine.edit import word_attention
from charforge.engine.prompts import encode_text
from charforge.errors import InvalidInput

_TOKENIZER = build_tiny_tokenizer()
_MARKED = {"smiling", "crying", "red", "hair", "calm", "cat", "looking"}
FILLER = [w for w in TINY_WORDS if len(_TOKENIZER(w, add_special_tokens=False).input_ids) == 1 and w not in _MARKED]
BASE = " ".join(FILLER[i % len(FILLER)] for i in range(80))  # 80 tokens: the first chunk is full
SOURCE = BASE + " girl with red hair smiling"  # "smiling" is token 84: the second chunk's column 1 + 9
SWAPPED = BASE + " girl with red hair crying"  # one token for one
STRETCHED = BASE + " girl with red hair xyzzy"  # five byte tokens for one
SETTINGS = dict(seed=3, steps=4, guidance=7.5)
# float noise of other batch contents vs. an edit's effect: one word of 85 in a tiny random model moves
# pixels by a few 1e-3, far above the 1e-6 that rounding leaves
EXACT, SAME, CHANGED = 1e-5, 1e-4, 1e-3


@pytest.fixture(params=["sd", "sdxl"])
def model(request, tiny_model, tiny_sdxl):
    return tiny_model if request.param == "sd" else tiny_sdxl


def _plain(model, prompts):
    return txt2img(model, list(prompts), **SETTINGS)


def test_the_prompts_are_as_long_as_the_tests_claim():
    ids = _TOKENIZER(SOURCE, add_special_tokens=False).input_ids
    assert len(ids) == 85 and ids.count(_TOKENIZER("smiling", add_special_tokens=False).input_ids[0]) == 1
    assert chunk_count(_TOKENIZER, SOURCE) == 2 and max_columns(_TOKENIZER, SOURCE) == 154
    assert len(_TOKENIZER("xyzzy", add_special_tokens=False).input_ids) > 1


def test_a_word_past_token_77_lands_in_the_second_chunk_where_the_encoder_put_it(model):
    columns = word_columns(model.tokenizer, SOURCE, "smiling")
    assert columns == [token_column(84)] == [77 + 1 + 84 - 75]
    ours, swapped = (encode_text(model, [p]).embeds[0] for p in (SOURCE, SWAPPED))
    assert ours.shape[0] == 154
    changed = ((ours - swapped).abs().amax(dim=-1) > 0).nonzero().flatten().tolist()
    assert changed and changed[0] == columns[0]  # the first column the word affects is its own
    assert max(changed) < 154 and min(changed) >= 77  # only the second chunk depends on it
    assert word_columns(model.tokenizer, SOURCE, "red hair") == [columns[0] - 2, columns[0] - 1]
    with pytest.raises(InvalidInput, match="'cat' does not occur"):
        word_columns(model.tokenizer, SOURCE, "cat")
    with pytest.raises(InvalidInput, match="'cat' does not occur"):
        Reweight.from_words(model.tokenizer, SOURCE, {"cat": 2.0})
    with pytest.raises(InvalidInput, match="lies past the 75 tokens"):
        word_columns(model.tokenizer, SOURCE, "smiling", chunks=1)  # a prompt cut to one chunk


@pytest.mark.slow
def test_reweighting_a_word_in_the_second_chunk_changes_the_picture(model):
    tok = model.tokenizer

    def run(weight):
        store = AttentionStore(self_max_tokens=0)
        reweight = Reweight.from_words(tok, SOURCE, {"smiling": weight})
        out = txt2img(model, SOURCE, hooks=[AttentionControl([store, reweight])], **SETTINGS)
        return out.pixels, store.average_cross(0)

    plain = _plain(model, [SOURCE]).pixels
    kept, maps = run(1.0)
    dropped, dropped_maps = run(0.0)
    column = word_columns(tok, SOURCE, "smiling")[0]
    assert maps.shape[-1] == 154
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]), atol=1e-4, rtol=0)  # both chunks
    assert maps[..., column].min() > 0  # the word is attended to where it is
    assert (kept - plain).abs().max() <= SAME  # weight 1 is no edit
    assert (dropped - plain).abs().max() > CHANGED  # weight 0 removes the word's contribution
    assert (dropped_maps[..., column] - maps[..., column]).abs().max() > 0  # and later maps follow


@pytest.mark.slow
@pytest.mark.parametrize("cross", [0.8, {"default_": 1.0, "smiling": 0.5}], ids=["copied", "mapped"])
def test_replace_with_identical_long_prompts_reproduces_the_source(model, cross):
    """Copied: the target gets the source's queries and keys. Mapped: the word's columns go free half
    way, so the maps are materialised and mixed through the 154-column mapper."""
    replace = Replace(model.tokenizer, SOURCE, [SOURCE], cross_replace_steps=cross, self_replace_steps=0.4)
    out = txt2img(model, [SOURCE, SOURCE], hooks=[AttentionControl([replace])], **SETTINGS).pixels
    mapped = (replace.cross_alpha.amax(dim=-1) > 0) & ~replace.cross_copy  # steps through the mapper
    assert replace.mappers.shape[-1] == 154 and bool(mapped.any()) == isinstance(cross, dict)
    assert (out[1] - out[0]).abs().max() <= EXACT
    assert (out - _plain(model, [SOURCE, SOURCE]).pixels).abs().max() <= SAME


@pytest.mark.slow
@pytest.mark.parametrize("target", [SWAPPED, STRETCHED], ids=["one-token", "five-token"])
def test_a_word_swap_past_token_77_changes_the_target_only(model, target):
    replace = Replace(model.tokenizer, SOURCE, [target], cross_replace_steps=0.8, self_replace_steps=0.4)
    out = txt2img(model, [SOURCE, target], hooks=[AttentionControl([replace])], **SETTINGS).pixels
    free = _plain(model, [SOURCE, target]).pixels
    assert (out[0] - free[0]).abs().max() <= SAME  # the source row is untouched
    assert (out[1] - out[0]).abs().max() > CHANGED  # the swapped word took effect
    assert (out[1] - free[1]).abs().max() > CHANGED  # under the source's attention


def test_local_blend_on_words_in_the_second_chunk_keeps_the_rest(model):
    tok = model.tokenizer
    blend = LocalBlend(tok, [SOURCE, SWAPPED], ["smiling", "crying"], threshold=0.5, start=0.25)
    assert blend.columns == {0: word_columns(tok, SOURCE, "smiling"), 1: word_columns(tok, SWAPPED, "crying")}
    out = txt2img(model, [SOURCE, SWAPPED], hooks=[AttentionControl([Replace(tok, SOURCE, [SWAPPED]), blend])],
                  **SETTINGS)  # fmt: skip
    keep = blend.mask.reshape(1, 1, *out.latents.shape[-2:]) < 0.5
    assert keep.any() and (~keep).any()  # the words' maps found a region, not everything or nothing
    assert ((out.latents[1:] - out.latents[:1]).abs() * keep).max() <= SAME
    assert (out.latents[1:] - out.latents[:1]).abs().max() > CHANGED


def test_word_attention_draws_a_word_of_the_second_chunk(model):
    picture = word_attention(model, SOURCE, "smiling", steps=2)
    assert picture.size == (32, 32) and np.asarray(picture).std() > 0
    with pytest.raises(InvalidInput, match="'cat' does not occur"):
        word_attention(model, SOURCE, "cat", steps=2)


def test_refine_adds_words_in_the_second_chunk(model):
    longer = SOURCE + " and a cat"
    refine = Refine(model.tokenizer, SOURCE, [longer])
    out = txt2img(model, [SOURCE, longer], hooks=[AttentionControl([refine])], **SETTINGS).pixels
    free = _plain(model, [SOURCE, longer]).pixels
    added = word_columns(model.tokenizer, longer, "cat")
    assert min(added) >= 77 and float(refine.alphas[0, added].max()) == 0.0  # new tokens keep their own maps
    assert (out[0] - free[0]).abs().max() <= SAME
    assert (out[1] - out[0]).abs().max() > CHANGED and (out[1] - free[1]).abs().max() > CHANGED


def test_mapper_tables_line_up_chunk_by_chunk():
    mapper = replacement_mapper(_TOKENIZER, SOURCE, STRETCHED)
    word = word_columns(_TOKENIZER, SOURCE, "smiling")[0]
    new = word_columns(_TOKENIZER, STRETCHED, "xyzzy")
    assert mapper.shape == (154, 154) and len(new) == 5 and new[0] == word
    assert torch.equal(mapper[:77, :77], torch.eye(77))  # the first chunk is untouched by the swap
    assert mapper[77, 77] == 1.0  # the second chunk's BOS
    torch.testing.assert_close(mapper[word, new], torch.full((5,), 0.2))  # the word's mass is spread, kept
    eos_source, eos_target = token_column(85), token_column(89)  # after the last token of each
    assert mapper[eos_source, eos_target] == 1.0
    # a table built for fewer chunks than the prompt needs covers what the conditioning holds
    assert replacement_mapper(_TOKENIZER, SOURCE, STRETCHED, chunks=1).shape == (77, 77)
    assert replacement_mapper(_TOKENIZER, SOURCE, STRETCHED, chunks=3)[154:, 154:].equal(torch.eye(77))


def test_emphasis_past_token_77_lands_on_its_column():
    marked = BASE + " girl with red hair (smiling:1.4)"
    plain, weights = emphasis_weights(_TOKENIZER, marked)
    column = word_columns(_TOKENIZER, SOURCE, "smiling")[0]
    assert plain == SOURCE and weights.shape == (154,)
    assert weights[column] == pytest.approx(1.4) and int((weights != 1).sum()) == 1
    assert word_columns(_TOKENIZER, marked, "smiling") == [column]  # columns of the text the encoder gets
