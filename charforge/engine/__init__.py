"""The diffusion engine: model loading, the one sampling loop, and the hooks that plug into it.

It knows nothing of characters, emotions or storage: it takes a model, prompts, tensors and hooks and
returns tensors and images.
"""

from charforge.engine.cache import cached_model
from charforge.engine.guidance import LossGuidance, colour_loss
from charforge.engine.hooks import BatchLayout, Hook, StepContext
from charforge.engine.images import decode_pixels, prepare_image, psnr, to_pil, to_uint8
from charforge.engine.loading import ModelBundle, default_model_path, load_model
from charforge.engine.loop import (
    decode_latents,
    denoise,
    encode_images,
    initial_noise,
    installed_processors,
    predict_x0,
    seeded_generators,
)
from charforge.engine.modes import Generation, GenerationParams, LatentBlend, img2img, inpaint, txt2img
from charforge.engine.outputs import format_parameters, parse_parameters, read_parameters, save_png
from charforge.engine.prompts import (
    PromptEmbeds,
    add_time_ids,
    encode_negative,
    encode_pair,
    encode_prompts,
    encode_text,
)
from charforge.engine.schedulers import make_scheduler

__all__ = [
    "BatchLayout",
    "Generation",
    "GenerationParams",
    "Hook",
    "LatentBlend",
    "LossGuidance",
    "ModelBundle",
    "PromptEmbeds",
    "StepContext",
    "add_time_ids",
    "cached_model",
    "colour_loss",
    "decode_latents",
    "decode_pixels",
    "default_model_path",
    "denoise",
    "encode_images",
    "encode_negative",
    "encode_pair",
    "encode_prompts",
    "encode_text",
    "format_parameters",
    "img2img",
    "initial_noise",
    "inpaint",
    "installed_processors",
    "load_model",
    "make_scheduler",
    "parse_parameters",
    "predict_x0",
    "prepare_image",
    "psnr",
    "read_parameters",
    "save_png",
    "seeded_generators",
    "to_pil",
    "to_uint8",
    "txt2img",
]
