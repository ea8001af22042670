"""A fifth inversion method is one class and one registration line: it inverts, stores, replays, edits.

The toy method here combines two built-in ideas: direct inversion's per-step offsets, fitted with
the source prompt as the unconditional prompt (negative-prompt inversion's trick). It reuses the
direct method's offset hook, and nothing outside this file knows it exists.
"""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_components
from diffusers import StableDiffusionPipeline

from charforge.engine import load_model
from charforge.engine.attention import Replace
from charforge.engine.edit import edit, reconstruct_latents, replay
from charforge.engine.inversion import (
    METHODS,
    InversionMethod,
    InversionResult,
    invert_latent,
    register_method,
    registry,
)
from charforge.engine.inversion.direct import OFFSETS, FollowOffsets, OffsetRecorder
from charforge.engine.loop import denoise
from charforge.errors import InvalidInput

PROMPT = "a portrait of a smiling girl with red hair"
TARGET = "a portrait of a crying girl with red hair"
STEPS = 6


class SourceNegativeDirect(InversionMethod):
    """Direct inversion's offsets, fitted (and replayed) with the source prompt as the negative prompt."""

    name = "toy-source-negative-direct"

    def correct(self, model, result, scheduler, cond, *, progress=False, **options):
        recorder = OffsetRecorder(result.trajectory)
        denoise(model, scheduler, result.trajectory[:1], cond, cond, result.guidance, [recorder])
        result.step_tensors[OFFSETS] = torch.cat(recorder.offsets)

    def source_embeddings(self, model, inversion, source_prompt=None):
        cond, _ = super().source_embeddings(model, inversion, source_prompt)
        return cond, cond

    def replay_hooks(self, inversion, *, needs_source=None, shortcut=False, offset_targets=False, **options):
        return [FollowOffsets(inversion, needs_source, shortcut, offset_targets)]


@pytest.fixture(scope="module")
def model():
    components = build_tiny_components()
    with torch.no_grad():  # a smoother random UNet, so DDIM inversion is meaningful (see test_inversion.py)
        components["unet"].conv_out.weight.mul_(0.1)
        components["unet"].conv_out.bias.mul_(0.1)
    pipe = StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return load_model(pipe, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def latent():
    coarse = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    smooth = torch.nn.functional.interpolate(coarse, size=(16, 16), mode="bilinear")
    return smooth / smooth.std()


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # registered for this test only
    register_method(SourceNegativeDirect())
    return SourceNegativeDirect.name


@pytest.mark.slow
def test_a_registered_method_inverts_and_reconstructs_exactly(model, latent, toy):
    assert toy in METHODS and len(METHODS) == 5
    inversion = invert_latent(model, latent, PROMPT, toy, steps=STEPS, guidance=7.5)
    assert inversion.method == toy and inversion.step_tensors[OFFSETS].shape == (STEPS, 4, 16, 16)
    ddim = invert_latent(model, latent, PROMPT, "ddim", steps=STEPS, guidance=7.5)
    # the toy's offsets put the guided source back on its trajectory; plain DDIM at 7.5 drifts
    torch.testing.assert_close(reconstruct_latents(model, inversion), latent, atol=1e-4, rtol=1e-4)
    assert (reconstruct_latents(model, ddim) - latent).abs().max() > 1e-2


@pytest.mark.slow
def test_a_registered_method_survives_storage(model, latent, toy, tmp_path):
    inversion = invert_latent(model, latent, PROMPT, toy, steps=STEPS, guidance=7.5)
    loaded = InversionResult.from_pretrained(inversion.save_pretrained(tmp_path / "inv"))
    assert loaded.method == toy and torch.equal(loaded.step_tensors[OFFSETS], inversion.step_tensors[OFFSETS])
    from_row = InversionResult.from_bytes(*inversion.to_bytes())
    assert torch.equal(reconstruct_latents(model, loaded), reconstruct_latents(model, from_row))


@pytest.mark.slow
def test_a_registered_method_edits(model, latent, toy):
    inversion = invert_latent(model, latent, PROMPT, toy, steps=STEPS, guidance=7.5)
    replace = Replace(model.tokenizer, PROMPT, [TARGET], cross_replace_steps=0.5, self_replace_steps=0.3)
    result = edit(model, inversion, TARGET, [replace])
    torch.testing.assert_close(result.latents[:1], latent, atol=1e-4, rtol=1e-4)  # the source row stays exact
    assert (result.latents[1:] - latent).abs().max() > 1e-3  # the target changed
    # its replay options reach its hooks: offsets on the target too give the source back for the same prompt
    same = replay(model, inversion, [PROMPT], offset_targets=True)
    torch.testing.assert_close(same[1:], latent, atol=1e-4, rtol=1e-4)


def test_an_unregistered_method_is_named_at_replay(model, latent):
    inversion = invert_latent(model, latent, PROMPT, "ddim", steps=2, guidance=1.0)
    inversion.method = "toy-gone"
    with pytest.raises(InvalidInput, match="unknown inversion method 'toy-gone'"):
        reconstruct_latents(model, inversion)
    with pytest.raises(ValueError, match="already registered"):
        register_method(type("Impostor", (InversionMethod,), {"name": "direct"})())
