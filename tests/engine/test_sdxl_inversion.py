"""Inversion and edits from an inversion on the tiny SDXL: every method inverts and replays through
the one loop with SDXL's per-row conditioning (pooled text, size numbers; null-text tunes the token
embeddings under the negative's pooled input), null-text reconstruction beats DDIM at guidance 7.5,
and a Prompt-to-Prompt replace with identical prompts reproduces the source.

As in tests/test_inversion.py, the random UNet's output layer is scaled down by 10 (a smoother random
function of the stock classes, which DDIM inversion needs) and unit-variance latents are inverted.
"""

from __future__ import annotations

import functools

import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from helpers.sdxl import build_tiny_sdxl_components

from charforge.engine import load_model
from charforge.engine.attention import LocalBlend, MutualSelfAttention, Refine, Replace, Reweight
from charforge.engine.edit import edit, reconstruct, reconstruct_latents
from charforge.engine.inversion import METHODS, invert, invert_latent

PROMPT = "a portrait of a smiling girl with red hair"
TARGET = "a portrait of a crying girl with red hair"
STEPS = 8


@functools.cache
def smooth_tiny_sdxl():
    components = build_tiny_sdxl_components()
    with torch.no_grad():
        components["unet"].conv_out.weight.mul_(0.1)
        components["unet"].conv_out.bias.mul_(0.1)
    return load_model(StableDiffusionXLPipeline(**components), device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def model():
    return smooth_tiny_sdxl()


@pytest.fixture(scope="module")
def latent():
    coarse = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    smooth = torch.nn.functional.interpolate(coarse, size=(16, 16), mode="bilinear")
    return smooth / smooth.std()


@pytest.fixture(scope="module")
def inversions(model, latent):
    return {
        method: invert_latent(model, latent, PROMPT, method, steps=STEPS, guidance=7.5, inner_steps=5)
        for method in METHODS
    }


def snr_db(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    return 10 * torch.log10(reference.pow(2).mean() / (estimate - reference).pow(2).mean()).item()


@pytest.mark.slow
def test_null_text_reconstruction_beats_ddim_at_guidance_7_5(model, latent, inversions):
    snr = {method: snr_db(reconstruct_latents(model, inv), latent) for method, inv in inversions.items()}
    pivot = invert_latent(model, latent, PROMPT, "ddim", steps=STEPS, guidance=1.0)
    snr["ddim@1"] = snr_db(reconstruct_latents(model, pivot), latent)
    assert snr["ddim"] < snr["ddim@1"] - 3  # guidance pushes plain DDIM off its trajectory
    assert snr["null-text"] > snr["ddim"] + 1
    assert snr["direct"] > 60  # offsets put the source back on the trajectory
    assert abs(snr["negative-prompt"] - snr["ddim@1"]) < 0.01  # guidance cancels for the source
    embeddings = inversions["null-text"].step_tensors["uncond_embeddings"]
    assert embeddings.shape == (STEPS, 77, model.unet.config.cross_attention_dim)


@pytest.mark.parametrize("method", ["null-text", "negative-prompt"])
def test_replace_with_identical_prompts_reproduces_the_source(model, inversions, method):
    inversion = inversions[method]
    replace = Replace(model.tokenizer, PROMPT, [PROMPT], cross_replace_steps=0.6, self_replace_steps=0.4)
    result = edit(model, inversion, PROMPT, [replace])
    torch.testing.assert_close(result.latents[1:], reconstruct_latents(model, inversion), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_direct_edit_keeps_the_source_exact_with_the_shortcut(model, inversions, latent):
    """The shortcut leaves the source out of the UNet batch or drops its unconditional pass: the
    remaining rows must still get their own SDXL conditioning."""
    inversion = inversions["direct"]
    controllers = lambda: [Replace(model.tokenizer, PROMPT, [TARGET], cross_replace_steps=0.6, self_replace_steps=0.4)]  # noqa: E731
    fast = edit(model, inversion, TARGET, controllers())
    full = edit(model, inversion, TARGET, controllers(), shortcut=False)
    torch.testing.assert_close(fast.latents[:1], latent)
    torch.testing.assert_close(fast.latents[1:], full.latents[1:], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_refine_reweight_local_blend_and_masactrl_edit_an_inverted_sdxl_picture(model, inversions):
    inversion = inversions["null-text"]
    base = reconstruct_latents(model, inversion)
    tok = model.tokenizer
    longer = PROMPT + " and a cat"
    sets = {
        "refine": (longer, [Refine(tok, PROMPT, [longer])]),
        "reweight": (PROMPT, [Reweight.from_words(tok, PROMPT, {"smiling": 3.0}, branch=1)]),
        "blend": (TARGET, [Replace(tok, PROMPT, [TARGET]), LocalBlend(tok, [PROMPT, TARGET], ["smiling", "crying"])]),
        "masactrl": (TARGET, [MutualSelfAttention(start_step=2, start_layer=0)]),
    }
    for name, (target, controllers) in sets.items():
        result = edit(model, inversion, target, controllers, decode_source=True)
        assert torch.isfinite(result.latents).all(), name
        assert (result.latents[1:] - base).abs().max() > 1e-3, name  # the edit did something


def test_invert_an_sdxl_image_end_to_end(model):
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    inversion = invert(model, image, PROMPT, "null-text", steps=3, inner_steps=2)
    pixels = reconstruct(model, inversion)
    assert pixels.shape == (1, 3, 32, 32) and 0 <= pixels.min() and pixels.max() <= 1
