"""LocalBlend with a given mask: the source's latents outside it at every step, no attention read."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_components
from diffusers import StableDiffusionPipeline

from charforge.engine import load_model
from charforge.engine.attention import LocalBlend, Replace
from charforge.engine.edit import replay
from charforge.engine.hooks import Hook
from charforge.engine.inversion import invert_latent
from charforge.errors import InvalidInput

PROMPT = "a portrait of a smiling girl with red hair"
TARGET = "a portrait of a crying girl with red hair"


@pytest.fixture(scope="module")
def model():
    pipe = StableDiffusionPipeline(
        **build_tiny_components(), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    return load_model(pipe, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def inversion(model):
    latent = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    return invert_latent(model, latent, PROMPT, "direct", steps=5, guidance=7.5)


def _left_half() -> torch.Tensor:
    cells = torch.zeros(16, 16)
    cells[:, :8] = 1.0
    return cells


class _Watch(Hook):
    """After every step (and after the blend): the largest change of a target outside the mask."""

    def __init__(self, outside: torch.Tensor) -> None:
        self.outside, self.worst = outside, []

    def on_step_end(self, ctx, latents):
        self.worst.append(float((latents[1:, :, self.outside] - latents[:1, :, self.outside]).abs().max()))
        return latents


def test_outside_the_mask_every_step_is_the_sources(model, inversion):
    cells = _left_half()
    watch = _Watch(cells == 0)
    replace = Replace(model.tokenizer, PROMPT, [TARGET], cross_replace_steps=0.6, self_replace_steps=0.4)
    latents = replay(model, inversion, [TARGET], [replace, LocalBlend(mask=cells)], hooks=[watch])
    assert watch.worst == [0.0] * 5
    inside = cells == 1
    assert (latents[1:, :, inside] - latents[:1, :, inside]).abs().max() > 1e-3
    free = replay(model, inversion, [TARGET], [replace])
    assert (free[1:, :, cells == 0] - free[:1, :, cells == 0]).abs().max() > 1e-3  # without the blend it would move


class _ReferenceBlend(Hook):
    """The blend written out: targets = source + mask * (target - source), after every step."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = mask

    def on_step_end(self, ctx, latents):
        out = latents.clone()
        out[1:] = latents[:1] + self.mask * (latents[1:] - latents[:1])
        return out


def test_a_mask_blend_is_the_plain_blend_and_reads_no_attention(model, inversion):
    """Bit-identical to the blend written out as a hook: had the mask mode asked for attention
    probabilities, the processors would have left the fused kernel and the bits would differ."""
    cells = _left_half()
    replace = Replace(model.tokenizer, PROMPT, [TARGET], cross_replace_steps=0.6, self_replace_steps=0.4)
    blended = replay(model, inversion, [TARGET], [replace, LocalBlend(mask=cells)])
    reference = replay(model, inversion, [TARGET], [replace], hooks=[_ReferenceBlend(cells)])
    assert torch.equal(blended, reference)


def test_words_or_a_mask(model):
    with pytest.raises(InvalidInput, match="words or a mask"):
        LocalBlend(model.tokenizer, [PROMPT], ["smiling"], mask=_left_half())
    with pytest.raises(InvalidInput, match="at least one word"):
        LocalBlend(model.tokenizer, [PROMPT], [])
