"""Blended-latent inpainting keeps what is outside the mask and redraws what is inside."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers.image_processor import VaeImageProcessor

from charforge.engine import decode_latents, encode_images, inpaint, seeded_generators
from charforge.errors import InvalidInput


def _scene(size: int) -> PIL.Image.Image:
    yy, xx = np.mgrid[0:size, 0:size] / size
    rgb = np.stack([xx, yy, 0.5 + 0.3 * np.sin(6 * xx)], axis=-1)
    return PIL.Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))


def _square_mask(size: int) -> tuple[PIL.Image.Image, slice]:
    inside = slice(size // 4, 3 * size // 4)
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[inside, inside] = 255
    return PIL.Image.fromarray(mask), inside


@pytest.fixture(params=["tiny_model", "mini_model"])
def any_plain_model(request):
    """Blending must work on any 4-channel model: the random tiny one and the shipped trained one."""
    return request.getfixturevalue(request.param)


def test_blended_inpaint_keeps_outside_and_redraws_inside(any_plain_model):
    model = any_plain_model
    size, factor, seed = model.default_size, model.vae_scale_factor, 3
    image, (mask, inside) = _scene(size), _square_mask(size)
    result = inpaint(model, image, mask, "a cat", seed=seed, steps=6)

    # the source latents, drawn as the call draws them (first use of the seeded generator)
    pixels = VaeImageProcessor(vae_scale_factor=factor).preprocess(image)
    source = encode_images(model, pixels, seeded_generators([seed]))
    latent_inside = slice(inside.start // factor, inside.stop // factor)
    outside = torch.ones(source.shape[-2:], dtype=torch.bool)
    outside[latent_inside, latent_inside] = False
    # outside the mask the final latent IS the source latent
    assert torch.equal(result.latents[0][:, outside], source[0][:, outside])

    with torch.no_grad():
        round_trip = (decode_latents(model, source) / 2 + 0.5).clamp(0, 1)[0]
    original = (pixels[0] / 2 + 0.5).to(round_trip)
    keep = torch.ones(size, size, dtype=torch.bool)
    keep[inside, inside] = False
    vae_error = (round_trip - original).abs()[:, keep].mean()
    kept_change = (result.pixels[0] - round_trip).abs()[:, keep].mean()
    redrawn_change = (result.pixels[0] - round_trip).abs()[:, ~keep].mean()
    # pixels outside differ from a plain VAE round trip by at most the VAE's own error
    # (the decoder sees the whole latent, so they are not bit-identical)...
    assert kept_change <= vae_error, (kept_change, vae_error)
    # ...while the masked region is redrawn
    assert redrawn_change > 2 * kept_change, (redrawn_change, kept_change)


def test_mask_of_another_size_is_refused(tiny_model):
    with pytest.raises(InvalidInput, match="mask is 16x16 but the image is 32x32"):
        inpaint(tiny_model, _scene(32), _square_mask(16)[0], "a cat", steps=2)
