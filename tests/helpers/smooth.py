"""A smoother tiny model shared by the inversion and edit tests.

A random UNet is a very rough function of its input and DDIM inversion assumes a smooth one, so the
output layer is scaled down by 10 (still the stock classes).
"""

from __future__ import annotations

import functools

import torch
from conftest import build_tiny_components
from diffusers import StableDiffusionPipeline

from charforge.engine import load_model

PROMPT = "a portrait of a smiling girl with red hair"


@functools.cache
def smooth_tiny_model(prediction_type: str = "epsilon", scheduler=None):
    """Shared by the inversion and edit tests (nothing here mutates it)."""
    components = build_tiny_components()
    with torch.no_grad():
        components["unet"].conv_out.weight.mul_(0.1)
        components["unet"].conv_out.bias.mul_(0.1)
    base = scheduler or components["scheduler"]
    components["scheduler"] = type(base).from_config(base.config, prediction_type=prediction_type)
    pipe = StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return load_model(pipe, device="cpu", dtype=torch.float32)
