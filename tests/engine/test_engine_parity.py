"""charforge's modes equal diffusers' own pipelines for the same components, seed, scheduler and steps.

This is the contract that lets users trust charforge with real checkpoints: the one loop is not an
approximation of Stable Diffusion sampling, it is the same computation.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline

from charforge.engine import img2img, inpaint, make_scheduler, txt2img

PROMPT = "a portrait of a girl with red hair"
NEGATIVE = "blue"


def _pipeline(cls, model, scheduler: str):
    pipe = cls(
        vae=model.vae,
        text_encoder=model.text_encoder,
        tokenizer=model.tokenizer,
        unet=model.unet,
        scheduler=make_scheduler(scheduler, model.scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _ours(generation) -> np.ndarray:
    return generation.pixels.permute(0, 2, 3, 1).cpu().numpy()


def _image(size: int = 32) -> PIL.Image.Image:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:size, 0:size] / size
    rgb = np.stack([xx, yy, 0.5 + 0.3 * np.sin(6 * xx)], axis=-1) + rng.normal(0, 0.05, (size, size, 3))
    return PIL.Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))


def _mask(size: int = 32) -> PIL.Image.Image:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[8:24, 10:26] = 255
    return PIL.Image.fromarray(mask)


@pytest.mark.parametrize("scheduler", ["ddim", "euler-a", "dpm++"])
def test_txt2img_equals_stable_diffusion_pipeline(tiny_model, scheduler):
    ours = txt2img(tiny_model, PROMPT, negative=NEGATIVE, seed=11, steps=4, guidance=7.5, scheduler=scheduler)
    theirs = _pipeline(StableDiffusionPipeline, tiny_model, scheduler)(
        PROMPT,
        negative_prompt=NEGATIVE,
        num_inference_steps=4,
        guidance_scale=7.5,
        generator=torch.Generator("cpu").manual_seed(11),
        output_type="np",
    ).images
    assert ours.pixels.shape == (1, 3, 32, 32)
    assert np.abs(_ours(ours) - theirs).max() <= 1e-4


@pytest.mark.parametrize("scheduler", ["ddim", "euler"])
def test_img2img_equals_img2img_pipeline(tiny_model, scheduler):
    image = _image()
    ours = img2img(tiny_model, image, PROMPT, strength=0.6, seed=5, steps=5, guidance=6.0, scheduler=scheduler)
    theirs = _pipeline(StableDiffusionImg2ImgPipeline, tiny_model, scheduler)(
        PROMPT,
        image=image,
        strength=0.6,
        num_inference_steps=5,
        guidance_scale=6.0,
        generator=torch.Generator("cpu").manual_seed(5),
        output_type="np",
    ).images
    assert np.abs(_ours(ours) - theirs).max() <= 1e-4


def test_nine_channel_inpaint_equals_inpaint_pipeline(tiny_inpaint_model):
    image, mask = _image(), _mask()
    ours = inpaint(tiny_inpaint_model, image, mask, PROMPT, seed=2, steps=4, guidance=7.5)
    theirs = _pipeline(StableDiffusionInpaintPipeline, tiny_inpaint_model, "ddim")(
        PROMPT,
        image=image,
        mask_image=mask,
        num_inference_steps=4,
        guidance_scale=7.5,
        generator=torch.Generator("cpu").manual_seed(2),
        output_type="np",
    ).images
    assert np.abs(_ours(ours) - theirs).max() <= 1e-4


def test_blended_inpaint_equals_inpaint_pipeline_on_a_plain_model(tiny_model):
    """diffusers' inpaint pipeline blends latents the same way when given a 4-channel UNet."""
    image, mask = _image(), _mask()
    ours = inpaint(tiny_model, image, mask, PROMPT, seed=8, steps=4, guidance=7.5, strength=0.8)
    theirs = _pipeline(StableDiffusionInpaintPipeline, tiny_model, "ddim")(
        PROMPT,
        image=image,
        mask_image=mask,
        strength=0.8,
        num_inference_steps=4,
        guidance_scale=7.5,
        generator=torch.Generator("cpu").manual_seed(8),
        output_type="np",
    ).images
    assert np.abs(_ours(ours) - theirs).max() <= 1e-4


def test_a_tiny_autoencoder_model_equals_the_pipelines_and_encodes_without_sampling(tiny_model_dir, tmp_path):
    """A model whose VAE is diffusers' `AutoencoderTiny` (TAESD, what people swap in for speed) has no
    posterior to sample: img2img equals diffusers' pipeline on it, and inversion's encoding is its latent."""
    import json
    import shutil

    from diffusers import AutoencoderKL, AutoencoderTiny

    from charforge.engine import load_model, prepare_image
    from charforge.engine.inversion import encode_mean

    folder = shutil.copytree(tiny_model_dir, tmp_path / "taesd")
    kl = AutoencoderKL.from_pretrained(folder / "vae")
    levels = len(kl.config.block_out_channels)
    torch.manual_seed(0)
    AutoencoderTiny(encoder_block_out_channels=(8,) * levels, decoder_block_out_channels=(8,) * levels,
                    latent_channels=kl.config.latent_channels, num_encoder_blocks=(1,) * levels,
                    num_decoder_blocks=(1,) * levels).save_pretrained(folder / "vae")  # fmt: skip
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "vae": ["diffusers", "AutoencoderTiny"]}))
    model = load_model(folder, device="cpu")
    assert isinstance(model.vae, AutoencoderTiny) and model.vae_scale_factor == 2 ** (levels - 1)

    image = _image()
    ours = img2img(model, image, PROMPT, strength=0.6, seed=5, steps=5, guidance=6.0)
    theirs = _pipeline(StableDiffusionImg2ImgPipeline, model, "ddim")(
        PROMPT, image=image, strength=0.6, num_inference_steps=5, guidance_scale=6.0,
        generator=torch.Generator("cpu").manual_seed(5), output_type="np",
    ).images  # fmt: skip
    assert np.abs(_ours(ours) - theirs).max() <= 1e-4
    pixels = prepare_image(model, image)
    with torch.no_grad():
        torch.testing.assert_close(encode_mean(model, pixels), model.vae.encode(pixels).latents)
