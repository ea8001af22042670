"""What `load_model` makes of SDXL folders: the family, both encoders, a pipeline over the same modules
for diffusers' loaders, an fp32 VAE where the checkpoint asks for it, and clear refusals."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from charforge.engine import decode_latents, load_model
from charforge.errors import ModelLoadError


def test_sd_models_stay_sd(tiny_model):
    assert tiny_model.family == "sd" and tiny_model.text_encoder_2 is None
    assert len(tiny_model.text_encoders) == 1 and not tiny_model.zero_empty_negative
    assert tiny_model.pipeline().unet is tiny_model.unet


def test_sdxl_pipeline_shares_the_bundle_modules(tiny_sdxl):
    pipe = tiny_sdxl.pipeline()
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    for name in ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"):
        assert getattr(pipe, name) is getattr(tiny_sdxl, name), name
    assert hasattr(pipe, "load_lora_weights") and hasattr(pipe, "load_textual_inversion")


def test_a_bundle_built_by_hand_builds_its_pipeline(tiny_sdxl):
    from dataclasses import replace

    bare = replace(tiny_sdxl, pipe=None)
    assert type(bare.pipeline()).__name__ == "StableDiffusionXLPipeline" and bare.pipeline().unet is tiny_sdxl.unet


def test_nine_channel_sdxl_loads_the_inpaint_pipeline(tiny_sdxl_inpaint):
    assert (
        tiny_sdxl_inpaint.is_inpainting
        and type(tiny_sdxl_inpaint.pipeline()).__name__ == "StableDiffusionXLInpaintPipeline"
    )


@pytest.mark.slow
def test_force_upcast_vae_stays_fp32_under_a_half_precision_unet(tiny_sdxl_dir):
    bundle = load_model(tiny_sdxl_dir, device="cpu", dtype=torch.float16)
    assert bundle.unet.dtype == torch.float16 and bundle.text_encoder_2.dtype == torch.float16
    assert bundle.vae.dtype == torch.float32
    pixels = decode_latents(bundle, torch.randn(1, 4, 16, 16).half())
    assert pixels.dtype == torch.float32 and torch.isfinite(pixels).all()


def test_a_refiner_without_first_encoder_is_refused(tiny_sdxl_dir, tmp_path):
    folder = tmp_path / "refiner"
    shutil.copytree(tiny_sdxl_dir, folder, ignore=shutil.ignore_patterns("text_encoder", "tokenizer"))
    index = json.loads((folder / "model_index.json").read_text())
    index.update(text_encoder=[None, None], tokenizer=[None, None])
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="no first text encoder"):
        load_model(folder, device="cpu")
