"""Emphasis markup ("(word:1.3)", "((word))", "[word]") weights token embeddings through the same
encoding path as every prompt: each marked token's hidden state is scaled by its weight, then the
prompt's embedding is rescaled to its unweighted mean (A1111's rule). Unmarked prompts are untouched."""

from __future__ import annotations

import pytest
import torch

from charforge.engine import encode_prompts, txt2img
from charforge.engine.prompts import encode_text
from charforge.errors import InvalidInput


def _common_factor(weighted: torch.Tensor, plain: torch.Tensor, column_weights: dict[int, float]) -> float:
    """The one scalar c with weighted == c * w_column * plain for every column (fails if there is none)."""
    weights = torch.ones(plain.shape[1])
    for column, w in column_weights.items():
        weights[column] = w
    scaled = plain * weights[None, :, None]
    factor = float((weighted * scaled).sum() / (scaled * scaled).sum())
    assert torch.allclose(weighted, factor * scaled, atol=1e-5)
    return factor


@pytest.mark.parametrize("family", ["sd", "sdxl"])
@pytest.mark.parametrize(
    ("marked", "columns"),
    [
        ("a (red:1.5) girl", {2: 1.5}),
        ("a ((red)) girl", {2: 1.21}),
        ("a [red] girl", {2: 1 / 1.1}),
        ("(a red:0.5) girl", {1: 0.5, 2: 0.5}),
    ],
)
def test_emphasis_scales_the_marked_tokens_and_keeps_the_mean(family, marked, columns, tiny_model, tiny_sdxl):
    model = tiny_model if family == "sd" else tiny_sdxl
    plain = encode_prompts(model, ["a red girl"])
    weighted = encode_prompts(model, [marked])
    factor = _common_factor(weighted, plain, columns)
    if plain.mean().abs() > 1e-3 * plain.abs().mean():  # A1111 restores the prompt's mean
        assert torch.allclose(weighted.mean(), plain.mean(), rtol=1e-4)
        assert factor != pytest.approx(1.0, abs=1e-4)
    else:  # a zero-mean (layer-normed) encoder: a ratio of means would be noise, so plain scaling
        assert factor == pytest.approx(1.0, abs=1e-5)
    assert not torch.allclose(weighted, plain, atol=1e-3)


def _direct(model, text: str) -> torch.Tensor:
    ids = model.tokenizer(text, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    return model.text_encoder(ids)[0]


@torch.no_grad()
def test_unmarked_prompts_and_escaped_brackets_are_plain_text(tiny_model):
    assert torch.equal(
        encode_prompts(tiny_model, ["a red girl: calm, 2:1"]), _direct(tiny_model, "a red girl: calm, 2:1")
    )
    assert torch.allclose(
        encode_prompts(tiny_model, [r"a \(red\) girl"]), _direct(tiny_model, "a (red) girl"), atol=1e-6
    )


def test_emphasis_past_the_first_chunk_lands_in_the_second(tiny_sdxl):
    words = ["girl"] * 100
    plain_text = " ".join(words)
    marked = " ".join(words[:90] + ["(girl:1.4)"] + words[91:])
    plain, weighted = encode_prompts(tiny_sdxl, [plain_text]), encode_prompts(tiny_sdxl, [marked])
    column = 77 + 1 + (90 - 75)  # second chunk: BOS, then token 75 onwards
    _common_factor(weighted, plain, {column: 1.4})
    assert torch.allclose(weighted.mean(), plain.mean(), rtol=1e-4)


def test_pooled_sdxl_embedding_is_not_weighted(tiny_sdxl):
    assert torch.equal(
        encode_text(tiny_sdxl, ["a (red:1.5) girl"]).pooled, encode_text(tiny_sdxl, ["a red girl"]).pooled
    )


def test_emphasis_changes_the_image(tiny_sdxl):
    plain = txt2img(tiny_sdxl, "a red girl", negative="blue", seed=1, steps=3, guidance=7.5).pixels
    marked = txt2img(tiny_sdxl, "a (red:1.6) girl", negative="blue", seed=1, steps=3, guidance=7.5).pixels
    assert (plain - marked).abs().max() > 1e-3


def test_unbalanced_brackets_are_one_clear_error(tiny_model):
    with pytest.raises(InvalidInput, match="unclosed emphasis bracket"):
        encode_prompts(tiny_model, ["a (red girl"])
