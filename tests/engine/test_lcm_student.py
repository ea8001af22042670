"""A consistency-distilled (LCM-style) student: a UNet that takes the guidance scale as an input
(`time_cond_proj_dim`) and the LCM scheduler. The one loop gives it one pass per row and the embedded
scale, and the picture equals diffusers' `LatentConsistencyModelPipeline`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import save_tiny_lcm_student
from diffusers import LatentConsistencyModelPipeline

from charforge.engine import load_model, make_scheduler, txt2img


@pytest.fixture(scope="module")
def lcm_student(tmp_path_factory):
    folder = save_tiny_lcm_student(tmp_path_factory.mktemp("lcm-student"))
    return load_model(folder, device="cpu", dtype=torch.float32)


@pytest.mark.parametrize("guidance", [1.0, 8.5])
def test_lcm_student_equals_latent_consistency_pipeline(lcm_student, guidance):
    assert lcm_student.embeds_guidance
    ours = txt2img(lcm_student, "a girl with red hair", seed=6, steps=4, guidance=guidance, scheduler="lcm")
    pipe = LatentConsistencyModelPipeline(
        vae=lcm_student.vae, text_encoder=lcm_student.text_encoder, tokenizer=lcm_student.tokenizer,
        unet=lcm_student.unet, scheduler=make_scheduler("lcm", lcm_student.scheduler.config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe("a girl with red hair", num_inference_steps=4, guidance_scale=guidance, output_type="np",
                  generator=torch.Generator("cpu").manual_seed(6)).images  # fmt: skip
    assert np.abs(ours.pixels.permute(0, 2, 3, 1).numpy() - theirs).max() <= 1e-4


def test_the_embedded_scale_steers_the_student(lcm_student):
    low = txt2img(lcm_student, "a girl", seed=6, steps=2, guidance=1.5, scheduler="lcm").pixels
    high = txt2img(lcm_student, "a girl", seed=6, steps=2, guidance=9.0, scheduler="lcm").pixels
    assert (low - high).abs().max() > 1e-3
