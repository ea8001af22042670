"""Running an inversion: pick the method by name, check the settings, hand over to the method."""

from __future__ import annotations

from typing import Any

import torch

from charforge.engine.images import ImageInput, prepare_image
from charforge.engine.inversion.base import encode_mean
from charforge.engine.inversion.direct import DirectInversion
from charforge.engine.inversion.registry import get_method
from charforge.engine.inversion.result import InversionResult
from charforge.engine.loading import ModelBundle
from charforge.errors import InvalidInput

DEFAULT_METHOD = DirectInversion.name


def invert(
    model: ModelBundle,
    image: ImageInput,
    prompt: str,
    method: str = DEFAULT_METHOD,
    *,
    width: int | None = None,
    height: int | None = None,
    **options: Any,
) -> InversionResult:
    """Invert `image` described by `prompt`, for redraws and edits at `guidance` (see `invert_latent`)."""
    pixels = prepare_image(model, image, width, height)
    return invert_latent(model, encode_mean(model, pixels), prompt, method, **options)


def invert_latent(
    model: ModelBundle,
    clean: torch.Tensor,
    prompt: str,
    method: str = DEFAULT_METHOD,
    *,
    steps: int = 50,
    guidance: float = 7.5,
    negative_prompt: str = "",
    progress: bool = False,
    **options: Any,
) -> InversionResult:
    """Invert an image latent (1, C, h, w). `options` go to the method (null-text: `inner_steps`, `early_stop`)."""
    chosen = get_method(method)
    if guidance < 1:
        raise InvalidInput(f"guidance must be >= 1, got {guidance}")
    return chosen.invert(
        model, clean, prompt, steps=steps, guidance=guidance, negative_prompt=negative_prompt, progress=progress,
        **options,
    )  # fmt: skip
