"""On SDXL too, charforge's modes equal diffusers' own pipelines for the same components, seed,
scheduler and steps: pooled text, size conditioning and the two encoders go through the one loop."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline

from charforge.engine import img2img, inpaint, make_scheduler, txt2img

PROMPT = "a portrait of a girl with red hair"
NEGATIVE = "blue"


def _pipeline(cls, model, scheduler: str):
    pipe = cls(
        vae=model.vae, text_encoder=model.text_encoder, text_encoder_2=model.text_encoder_2, tokenizer=model.tokenizer,
        tokenizer_2=model.tokenizer_2, unet=model.unet, scheduler=make_scheduler(scheduler, model.scheduler.config),
    )  # fmt: skip
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


def test_tiny_sdxl_loads_as_sdxl(tiny_sdxl):
    assert tiny_sdxl.family == "sdxl" and tiny_sdxl.text_encoder_2 is not None and tiny_sdxl.tokenizer_2 is not None
    assert type(tiny_sdxl.pipeline()).__name__ == "StableDiffusionXLPipeline"
    assert tiny_sdxl.pipeline().unet is tiny_sdxl.unet  # diffusers' loaders change the modules we sample with


@pytest.mark.parametrize("scheduler", ["euler", "ddim", "dpm++"])
def test_txt2img_equals_sdxl_pipeline(tiny_sdxl, scheduler):
    ours = txt2img(tiny_sdxl, PROMPT, negative=NEGATIVE, seed=11, steps=4, guidance=7.5, scheduler=scheduler)
    theirs = _pipeline(StableDiffusionXLPipeline, tiny_sdxl, scheduler)(
        PROMPT, negative_prompt=NEGATIVE, num_inference_steps=4, guidance_scale=7.5, height=32, width=32,
        generator=torch.Generator("cpu").manual_seed(11), output_type="np",
    ).images  # fmt: skip
    assert ours.pixels.shape == (1, 3, 32, 32)
    assert np.abs(_ours(ours) - theirs).max() <= 1e-4


def test_empty_negative_is_zeros_as_in_sdxl_pipelines(tiny_sdxl):
    """SDXL's `force_zeros_for_empty_prompt`: no negative prompt means a zero unconditional input."""
    ours = txt2img(tiny_sdxl, [PROMPT, "a cat"], seed=[3, 4], steps=3, guidance=5.0)
    theirs = _pipeline(StableDiffusionXLPipeline, tiny_sdxl, "ddim")(
        [PROMPT, "a cat"], num_inference_steps=3, guidance_scale=5.0, height=32, width=32,
        generator=[torch.Generator("cpu").manual_seed(s) for s in (3, 4)], output_type="np",
    ).images  # fmt: skip
    assert np.abs(_ours(ours) - theirs).max() <= 1e-4


def test_unguided_txt2img_equals_sdxl_pipeline(tiny_sdxl):
    ours = txt2img(tiny_sdxl, PROMPT, seed=2, steps=3, guidance=1.0)
    theirs = _pipeline(StableDiffusionXLPipeline, tiny_sdxl, "ddim")(
        PROMPT, num_inference_steps=3, guidance_scale=1.0, height=32, width=32,
        generator=torch.Generator("cpu").manual_seed(2), output_type="np",
    ).images  # fmt: skip
    assert np.abs(_ours(ours) - theirs).max() <= 1e-4


@pytest.mark.parametrize("scheduler", ["ddim", "euler"])
def test_img2img_equals_sdxl_img2img_pipeline(tiny_sdxl, scheduler):
    image = _image()
    ours = img2img(tiny_sdxl, image, PROMPT, negative=NEGATIVE, strength=0.6, seed=5, steps=5, guidance=6.0,
                   scheduler=scheduler)  # fmt: skip
    theirs = _pipeline(StableDiffusionXLImg2ImgPipeline, tiny_sdxl, scheduler)(
        PROMPT, negative_prompt=NEGATIVE, image=image, strength=0.6, num_inference_steps=5, guidance_scale=6.0,
        generator=torch.Generator("cpu").manual_seed(5), output_type="np",
    ).images  # fmt: skip
    assert np.abs(_ours(ours) - theirs).max() <= 1e-4


def test_nine_channel_inpaint_equals_sdxl_inpaint_pipeline(tiny_sdxl_inpaint):
    image, mask = _image(), _mask()
    ours = inpaint(tiny_sdxl_inpaint, image, mask, PROMPT, negative=NEGATIVE, seed=2, steps=4, guidance=7.5)
    theirs = _pipeline(StableDiffusionXLInpaintPipeline, tiny_sdxl_inpaint, "ddim")(
        PROMPT, negative_prompt=NEGATIVE, image=image, mask_image=mask, strength=1.0, num_inference_steps=4,
        guidance_scale=7.5, height=32, width=32, generator=torch.Generator("cpu").manual_seed(2), output_type="np",
    ).images  # fmt: skip
    assert np.abs(_ours(ours) - theirs).max() <= 1e-4


@pytest.mark.parametrize("strength", [0.8, 1.0])
def test_blended_inpaint_equals_sdxl_inpaint_pipeline_on_a_plain_model(tiny_sdxl, strength):
    image, mask = _image(), _mask()
    ours = inpaint(tiny_sdxl, image, mask, PROMPT, negative=NEGATIVE, seed=8, steps=4, guidance=7.5, strength=strength)
    theirs = _pipeline(StableDiffusionXLInpaintPipeline, tiny_sdxl, "ddim")(
        PROMPT, negative_prompt=NEGATIVE, image=image, mask_image=mask, strength=strength, num_inference_steps=4,
        guidance_scale=7.5, height=32, width=32, generator=torch.Generator("cpu").manual_seed(8), output_type="np",
    ).images  # fmt: skip
    assert np.abs(_ours(ours) - theirs).max() <= 1e-4
