"""Inversion on tiny models: grid alignment, round trips, the guided-reconstruction finding, storage.

A random UNet is a very rough function of its input, and DDIM inversion is only accurate for a
smooth one (it assumes the noise prediction barely changes between neighbouring steps). The models
here therefore scale the UNet's output layer down by 10 (a smoother random function, still the stock
classes) and invert unit-variance latents directly, since the tiny random VAE's latents are tiny.
"""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import DDIMInverseScheduler, EulerDiscreteScheduler
from helpers.smooth import PROMPT, smooth_tiny_model

from charforge.engine.edit import reconstruct, reconstruct_latents
from charforge.engine.inversion import InversionResult, inversion_schedulers, invert, invert_latent
from charforge.errors import IntegrityError, InvalidInput, NotFound, StaleIdentity


@pytest.fixture(scope="module")
def model():
    return smooth_tiny_model()


@pytest.fixture(scope="module")
def latent():
    coarse = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    smooth = torch.nn.functional.interpolate(coarse, size=(16, 16), mode="bilinear")
    return smooth / smooth.std()


def snr_db(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    return 10 * torch.log10(reference.pow(2).mean() / (estimate - reference).pow(2).mean()).item()


@pytest.mark.parametrize("steps", [10, 25, 50])
def test_inverse_timesteps_mirror_the_sampler(model, steps):
    forward, inverse = inversion_schedulers(model, steps)
    assert torch.equal(inverse.timesteps.flip(0), forward.timesteps)
    # the level the sampler ends at is the level inversion starts from
    assert float(inverse.initial_alpha_cumprod) == float(forward.final_alpha_cumprod)
    # the trap: an inverse scheduler built with its defaults sits one timestep off SD's grid
    naive = DDIMInverseScheduler()
    naive.set_timesteps(steps)
    assert not torch.equal(naive.timesteps.flip(0), forward.timesteps)


def test_grid_from_a_non_ddim_config_is_safe():
    """Euler configs have no clip_sample (DDIM's default would clamp latents) and may use linspace."""
    euler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, timestep_spacing="linspace")
    model = smooth_tiny_model(scheduler=euler)
    forward, inverse = inversion_schedulers(model, 20)
    assert not forward.config.clip_sample and not inverse.config.clip_sample
    assert torch.equal(inverse.timesteps.flip(0), forward.timesteps)


@pytest.mark.slow
@pytest.mark.parametrize("prediction_type, floor_db", [("epsilon", 20.0), ("v_prediction", 15.0)])
def test_ddim_round_trip_at_guidance_one(prediction_type, floor_db, latent):
    model = smooth_tiny_model(prediction_type)
    inversion = invert_latent(model, latent, PROMPT, "ddim", steps=20, guidance=1.0)
    assert inversion.trajectory.shape == (21, 4, 16, 16)
    assert torch.equal(inversion.trajectory[-1:], latent)
    assert snr_db(reconstruct_latents(model, inversion), latent) > floor_db


@pytest.mark.slow  # five inversions, one optimising null-text embeddings
def test_guided_reconstruction_needs_more_than_ddim(model, latent):
    steps = 8
    results = {
        method: invert_latent(model, latent, PROMPT, method, steps=steps, guidance=7.5, inner_steps=5)
        for method in ("ddim", "null-text", "negative-prompt", "direct")
    }
    snr = {method: snr_db(reconstruct_latents(model, inv), latent) for method, inv in results.items()}
    pivot = invert_latent(model, latent, PROMPT, "ddim", steps=steps, guidance=1.0)
    snr["ddim@1"] = snr_db(reconstruct_latents(model, pivot), latent)

    assert snr["ddim"] < snr["ddim@1"] - 6  # guidance pushes plain DDIM off its trajectory
    assert snr["direct"] > 60  # offsets put the source back on the trajectory: exact up to float error
    assert abs(snr["negative-prompt"] - snr["ddim@1"]) < 0.01  # guidance cancels for the source
    assert snr["null-text"] > snr["ddim"] + 1  # the optimised embeddings pull it back towards the pivot
    losses = results["null-text"].extra["losses"]
    assert len(losses) == steps and all(last <= first for first, last in losses)
    assert results["null-text"].step_tensors["uncond_embeddings"].shape == (steps, 77, 32)
    assert results["direct"].step_tensors["offsets"].shape == (steps, 4, 16, 16)


@pytest.mark.slow
def test_save_load_and_tamper_detection(model, latent, tmp_path):
    inversion = invert_latent(model, latent, PROMPT, "direct", steps=4, guidance=7.5)
    folder = inversion.save_pretrained(tmp_path / "inv")
    meta = json.loads((folder / "inversion.json").read_text())
    assert (meta["method"], meta["steps"], meta["guidance"], meta["model_hash"]) == ("direct", 4, 7.5, model.model_hash)
    loaded = InversionResult.from_pretrained(folder)
    assert torch.equal(loaded.trajectory, inversion.trajectory) and torch.equal(loaded.step_tensors["offsets"], inversion.step_tensors["offsets"])
    assert loaded.timesteps == inversion.timesteps and set(loaded.step_tensors) == {"offsets"}
    torch.testing.assert_close(reconstruct_latents(model, loaded), reconstruct_latents(model, inversion))

    blob = bytearray((folder / "inversion.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (folder / "inversion.safetensors").write_bytes(bytes(blob))
    with pytest.raises(IntegrityError):
        InversionResult.from_pretrained(folder)
    with pytest.raises(NotFound):
        InversionResult.from_pretrained(tmp_path / "missing")


def test_refuses_other_models_and_bad_options(model, latent):
    inversion = invert_latent(model, latent, PROMPT, "ddim", steps=2, guidance=1.0)
    inversion.model_hash = "0" * 64
    with pytest.raises(StaleIdentity):
        reconstruct_latents(model, inversion)
    with pytest.raises(InvalidInput, match="unknown inversion method"):
        invert_latent(model, latent, PROMPT, "magic")
    with pytest.raises(InvalidInput, match="guidance"):
        invert_latent(model, latent, PROMPT, "ddim", guidance=0.5)


def test_invert_an_image_end_to_end(model):
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    inversion = invert(model, image, PROMPT, "direct", steps=3)
    assert (inversion.width, inversion.height) == (32, 32)
    pixels = reconstruct(model, inversion)
    assert pixels.shape == (1, 3, 32, 32) and 0 <= pixels.min() and pixels.max() <= 1
