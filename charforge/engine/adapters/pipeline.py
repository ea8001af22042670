"""A diffusers pipeline over a bundle's own modules, so diffusers' adapter loaders act on the shared model.

`load_textual_inversion`, `load_lora_weights`, `set_adapters` and `unload_lora_weights` are methods of
diffusers pipelines; a `ModelBundle` keeps only the components. The pipeline built here holds the very
same module objects (no copies), so what its loaders change is what the sampling loop runs.
"""

from __future__ import annotations

import weakref
from typing import Any

from charforge.engine.loading import ModelBundle

_PIPELINES: dict[int, tuple[weakref.ref, Any]] = {}


def diffusers_pipeline(model: ModelBundle) -> Any:
    """The (cached) `StableDiffusionPipeline` sharing `model`'s modules; its tokenizer follows the bundle's."""
    from diffusers import StableDiffusionPipeline

    cached = _PIPELINES.get(id(model))
    if cached is not None and cached[0]() is model:
        pipe = cached[1]
    else:
        pipe = StableDiffusionPipeline(
            vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer, unet=model.unet,
            scheduler=model.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )  # fmt: skip
        pipe.set_progress_bar_config(disable=True)
        _PIPELINES[id(model)] = (weakref.ref(model), pipe)
        weakref.finalize(model, _PIPELINES.pop, id(model), None)
    if pipe.tokenizer is not model.tokenizer:
        pipe.tokenizer = model.tokenizer
    return pipe
