"""Pictures in and out of latent space, all through diffusers' `VaeImageProcessor`.

One path each way: images -> [-1, 1] tensors for the VAE (`prepare_image`), latents -> [0, 1] pixels
(`decode_pixels`) -> uint8 arrays or PIL images (`to_uint8`, `to_pil`). The rounding is the
processor's, so every picture charforge writes is quantised the same way as diffusers' pipelines.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers.image_processor import VaeImageProcessor

from charforge.engine.loading import ModelBundle
from charforge.engine.loop import decode_latents
from charforge.errors import InvalidInput

ImageInput = PIL.Image.Image | np.ndarray | torch.Tensor

_POSTPROCESS = VaeImageProcessor()  # postprocessing does not depend on the VAE factor


def prepare_image(
    model: ModelBundle, image: ImageInput, width: int | None = None, height: int | None = None
) -> torch.Tensor:
    """One image -> (1, 3, H, W) float32 in [-1, 1]; sides default to the image's, rounded down to the VAE factor."""
    processor = VaeImageProcessor(vae_scale_factor=model.vae_scale_factor)
    pixels = processor.preprocess(image, height=height, width=width).to(torch.float32)
    if pixels.shape[0] != 1:
        raise InvalidInput(f"expected one image, got {pixels.shape[0]}")
    if min(pixels.shape[-2:]) < model.vae_scale_factor:
        raise InvalidInput(f"image is too small ({pixels.shape[-1]}x{pixels.shape[-2]})")
    return pixels


def unit_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """VAE-range pixels in [-1, 1] -> [0, 1] (clamped)."""
    return _POSTPROCESS.postprocess(pixels, output_type="pt")


@torch.no_grad()
def decode_pixels(model: ModelBundle, latents: torch.Tensor) -> torch.Tensor:
    """Latents (B, C, h, w) -> pixels in [0, 1] (B, 3, H, W)."""
    return unit_pixels(decode_latents(model, latents))


def to_uint8(pixels: torch.Tensor) -> list[np.ndarray]:
    """Pixels in [0, 1] (B, 3, H, W) -> one uint8 (H, W, 3) array per row."""
    return [np.array(image) for image in to_pil(pixels)]


def to_pil(pixels: torch.Tensor) -> list[PIL.Image.Image]:
    """Pixels in [0, 1] (B, 3, H, W) -> one RGB image per row."""
    return VaeImageProcessor.numpy_to_pil(VaeImageProcessor.pt_to_numpy(pixels.float()))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1] (any matching shape)."""
    mse = F.mse_loss(a.float().cpu(), b.float().cpu()).item()
    return float("inf") if mse == 0 else 10.0 * float(np.log10(1.0 / mse))
