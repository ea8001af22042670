"""Prompts past CLIP's 77 positions are chunked, not cut: 75 tokens per chunk between BOS and EOS, each
chunk encoded on its own and the hidden states concatenated (the long-prompt pipelines' and A1111's
scheme), for SD 1.x/2.x and SDXL alike.

The reference here is written from that description, token ids in hand, and fed to diffusers' own
pipelines through `prompt_embeds`, which is how they take prompts longer than 77 tokens.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_WORDS, build_tiny_tokenizer
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from charforge.engine import encode_prompts, make_scheduler, txt2img
from charforge.engine.prompts import encode_text

_TOKENIZER = build_tiny_tokenizer()
_WORDS = [w for w in TINY_WORDS if len(_TOKENIZER(w, add_special_tokens=False).input_ids) == 1]
FIRST = [_WORDS[i % len(_WORDS)] for i in range(75)]  # exactly one chunk of single-token words
REST = [_WORDS[(7 * i + 3) % len(_WORDS)] for i in range(75)]
LONG = " ".join(FIRST + REST)  # 150 tokens
HEAD = " ".join(FIRST)  # what a 77-position encoder keeps of it
NEGATIVE = "blue sky"


def _reference_chunks(tokenizer, text: str, count: int) -> list[torch.Tensor]:
    ids = tokenizer(text, add_special_tokens=False).input_ids
    chunks = []
    for k in range(count):
        part = ids[75 * k : 75 * (k + 1)]
        row = [tokenizer.bos_token_id, *part, tokenizer.eos_token_id]
        row += [tokenizer.pad_token_id] * (77 - len(row))
        chunks.append(torch.tensor([row]))
    return chunks


@torch.no_grad()
def _reference_sd(model, text: str, count: int) -> torch.Tensor:
    return torch.cat([model.text_encoder(c)[0] for c in _reference_chunks(model.tokenizer, text, count)], dim=1)


@torch.no_grad()
def _reference_sdxl(model, text: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    per_encoder, pooled = [], None
    for tokenizer, encoder in ((model.tokenizer, model.text_encoder), (model.tokenizer_2, model.text_encoder_2)):
        outs = [encoder(c, output_hidden_states=True) for c in _reference_chunks(tokenizer, text, count)]
        per_encoder.append(torch.cat([o.hidden_states[-2] for o in outs], dim=1))
        pooled = outs[0][0]  # the projection model comes last: its first chunk's pooled output
    return torch.cat(per_encoder, dim=-1), pooled


def _pixels(generation) -> np.ndarray:
    return generation.pixels.permute(0, 2, 3, 1).cpu().numpy()


def test_the_prompts_are_the_lengths_the_tests_claim():
    assert len(_TOKENIZER(LONG, add_special_tokens=False).input_ids) == 150
    assert len(_TOKENIZER(HEAD, add_special_tokens=False).input_ids) == 75


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_a_150_token_prompt_is_encoded_in_two_chunks_and_changes_the_image(family, tiny_model, tiny_sdxl):
    model = tiny_model if family == "sd" else tiny_sdxl
    long, head = encode_text(model, [LONG]), encode_text(model, [HEAD])
    assert long.embeds.shape[1] == 154 and head.embeds.shape[1] == 77
    assert torch.equal(long.embeds[:, :77], head.embeds)  # the first chunk is the 77-token encoding
    image_long = txt2img(model, LONG, negative=NEGATIVE, seed=3, steps=3, guidance=7.5).pixels
    image_head = txt2img(model, HEAD, negative=NEGATIVE, seed=3, steps=3, guidance=7.5).pixels
    assert (image_long - image_head).abs().max() > 1e-2


def test_long_sd_prompt_equals_stable_diffusion_pipeline_given_chunked_embeddings(tiny_model):
    embeds, negative = _reference_sd(tiny_model, LONG, 2), _reference_sd(tiny_model, NEGATIVE, 2)
    assert torch.allclose(encode_prompts(tiny_model, [LONG]), embeds, atol=1e-6)
    pipe = StableDiffusionPipeline(
        vae=tiny_model.vae, text_encoder=tiny_model.text_encoder, tokenizer=tiny_model.tokenizer, unet=tiny_model.unet,
        scheduler=make_scheduler("ddim", tiny_model.scheduler.config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(
        prompt_embeds=embeds, negative_prompt_embeds=negative, num_inference_steps=4, guidance_scale=7.5,
        generator=torch.Generator("cpu").manual_seed(9), output_type="np",
    ).images  # fmt: skip
    ours = txt2img(tiny_model, LONG, negative=NEGATIVE, seed=9, steps=4, guidance=7.5)
    assert np.abs(_pixels(ours) - theirs).max() <= 1e-4


def test_long_sdxl_prompt_equals_sdxl_pipeline_given_chunked_embeddings(tiny_sdxl):
    embeds, pooled = _reference_sdxl(tiny_sdxl, LONG, 2)
    negative, negative_pooled = _reference_sdxl(tiny_sdxl, NEGATIVE, 2)
    ours_embeds = encode_text(tiny_sdxl, [LONG])
    assert torch.allclose(ours_embeds.embeds, embeds, atol=1e-6) and torch.allclose(
        ours_embeds.pooled, pooled, atol=1e-6
    )
    pipe = StableDiffusionXLPipeline(
        vae=tiny_sdxl.vae, text_encoder=tiny_sdxl.text_encoder, text_encoder_2=tiny_sdxl.text_encoder_2,
        tokenizer=tiny_sdxl.tokenizer, tokenizer_2=tiny_sdxl.tokenizer_2, unet=tiny_sdxl.unet,
        scheduler=make_scheduler("euler", tiny_sdxl.scheduler.config),
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(
        prompt_embeds=embeds, pooled_prompt_embeds=pooled, negative_prompt_embeds=negative,
        negative_pooled_prompt_embeds=negative_pooled, num_inference_steps=4, guidance_scale=7.5, height=32, width=32,
        generator=torch.Generator("cpu").manual_seed(9), output_type="np",
    ).images  # fmt: skip
    ours = txt2img(tiny_sdxl, LONG, negative=NEGATIVE, seed=9, steps=4, guidance=7.5, scheduler="euler")
    assert np.abs(_pixels(ours) - theirs).max() <= 1e-4


def test_rows_of_different_lengths_share_a_batch(tiny_sdxl):
    """A short prompt beside a long one gets an empty second chunk (the encoding of ""), as in A1111."""
    padded = encode_text(tiny_sdxl, [HEAD, LONG]).embeds[0]
    assert padded.shape[0] == 154
    assert torch.allclose(padded[:77], encode_text(tiny_sdxl, [HEAD]).embeds[0], atol=1e-6)
    assert torch.allclose(padded[77:], encode_text(tiny_sdxl, [""]).embeds[0], atol=1e-6)
    images = txt2img(tiny_sdxl, [HEAD, LONG], negative=NEGATIVE, seed=[1, 2], steps=2, guidance=7.5).pixels
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()
