"""A single-file SDXL checkpoint (original layout, safetensors) loads offline with a local config and
draws the same image as the diffusers folder it came from."""

from __future__ import annotations

import pytest
import torch
from helpers.sdxl import to_sdxl_checkpoint
from safetensors.torch import save_file

from charforge.engine import load_model, txt2img
from charforge.errors import ModelLoadError


@pytest.fixture(scope="module")
def sdxl_single_file(tiny_sdxl, tmp_path_factory):
    path = tmp_path_factory.mktemp("single-xl") / "tiny-sdxl.safetensors"
    save_file(to_sdxl_checkpoint(tiny_sdxl), path)
    return path


def test_single_file_sdxl_loads_the_same_weights(sdxl_single_file, tiny_sdxl, tiny_sdxl_dir):
    bundle = load_model(sdxl_single_file, device="cpu", config=tiny_sdxl_dir)
    assert bundle.family == "sdxl" and type(bundle.pipeline()).__name__ == "StableDiffusionXLPipeline"
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        ours, theirs = getattr(bundle, name).state_dict(), getattr(tiny_sdxl, name).state_dict()
        assert ours.keys() == theirs.keys(), name
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), name
    assert bundle.source == str(sdxl_single_file) and len(bundle.model_hash) == 64


def test_single_file_sdxl_draws_the_folder_image(sdxl_single_file, tiny_sdxl, tiny_sdxl_dir):
    bundle = load_model(sdxl_single_file, device="cpu", config=tiny_sdxl_dir)
    ours = txt2img(bundle, "a girl with red hair", negative="blue", seed=4, steps=3, guidance=6.0).pixels
    folder = txt2img(tiny_sdxl, "a girl with red hair", negative="blue", seed=4, steps=3, guidance=6.0).pixels
    assert (ours - folder).abs().max() <= 1e-6


def test_single_file_sdxl_without_config_says_what_to_do(sdxl_single_file):
    with pytest.raises(ModelLoadError) as info:
        load_model(sdxl_single_file, device="cpu")
    assert "tiny-sdxl.safetensors" in str(info.value) and "--config" in str(info.value)
