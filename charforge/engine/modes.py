"""txt2img, img2img and inpainting: each prepares starting latents and conditioning, then hands over
to the one loop. Preparation mirrors diffusers' pipelines step for step (including the order in which
the seeded generator is consumed), which is what makes the outputs equal for equal settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import PIL.Image
import torch
from diffusers.image_processor import VaeImageProcessor

from charforge.engine.hooks import Hook, StepContext
from charforge.engine.images import ImageInput, decode_pixels, prepare_image, to_pil
from charforge.engine.loading import ModelBundle
from charforge.engine.loop import (
    denoise,
    encode_images,
    initial_noise,
    seeded_generators,
)
from charforge.engine.prompts import encode_pair, encode_text
from charforge.engine.schedulers import make_scheduler, scheduler_key
from charforge.errors import InvalidInput
from charforge.validation import finite


@dataclass(frozen=True)
class GenerationParams:
    """Everything needed to redraw one image; written into its PNG."""

    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance: float
    scheduler: str
    width: int
    height: int
    model_hash: str
    mode: str = "txt2img"
    strength: float | None = None


@dataclass
class Generation:
    """The result of one call: pixels in [0, 1] (B, 3, H, W), final latents, and per-row parameters."""

    pixels: torch.Tensor
    latents: torch.Tensor
    params: list[GenerationParams] = field(default_factory=list)

    @property
    def images(self) -> list[PIL.Image.Image]:
        return to_pil(self.pixels)


@dataclass
class _Request:
    """Validated, broadcast inputs shared by all modes."""

    prompts: list[str]
    negatives: list[str]
    seeds: list[int]
    steps: int
    guidance: float
    scheduler: str
    width: int
    height: int


def txt2img(
    model: ModelBundle,
    prompt: str | Sequence[str],
    *,
    negative: str | Sequence[str] = "",
    seed: int | Sequence[int] = 0,
    steps: int = 30,
    guidance: float = 7.5,
    scheduler: str = "ddim",
    width: int | None = None,
    height: int | None = None,
    hooks: Sequence[Hook] = (),
    eta: float = 0.0,
    progress: bool = False,
) -> Generation:
    """Images from prompts. Several prompts share one UNet call per step; one int seed gives every row
    the same starting noise (what prompt-to-prompt edits need), a list gives each row its own."""
    req = _request(model, prompt, negative, seed, steps, guidance, scheduler, width, height)
    sched = make_scheduler(req.scheduler, model.scheduler.config)
    sched.set_timesteps(req.steps, device=model.device)
    generators = seeded_generators(req.seeds)
    factor = model.vae_scale_factor
    shape = (len(req.prompts), model.latent_channels, req.height // factor, req.width // factor)
    latents = initial_noise(model, shape, generators) * sched.init_noise_sigma
    return _run(model, req, sched, latents, generators, hooks, eta, progress, mode="txt2img")


def img2img(
    model: ModelBundle,
    image: ImageInput,
    prompt: str | Sequence[str],
    *,
    strength: float = 0.75,
    negative: str | Sequence[str] = "",
    seed: int | Sequence[int] = 0,
    steps: int = 30,
    guidance: float = 7.5,
    scheduler: str = "ddim",
    width: int | None = None,
    height: int | None = None,
    hooks: Sequence[Hook] = (),
    eta: float = 0.0,
    progress: bool = False,
) -> Generation:
    """Redraw `image`: noise its latent to the timestep `int(steps * strength)` steps from the end, then denoise."""
    _check_strength(strength)
    pixels, width, height = _preprocess(model, image, width, height)
    req = _request(model, prompt, negative, seed, steps, guidance, scheduler, width, height)
    sched = make_scheduler(req.scheduler, model.scheduler.config)
    timesteps = strength_timesteps(model, sched, req.steps, strength)
    generators = seeded_generators(req.seeds)
    batch = len(req.prompts)
    source = encode_images(model, pixels.expand(batch, -1, -1, -1), generators)
    noise = initial_noise(model, tuple(source.shape), generators)
    latents = sched.add_noise(source, noise, timesteps[:1].repeat(batch))
    return _run(
        model,
        req,
        sched,
        latents,
        generators,
        hooks,
        eta,
        progress,
        mode="img2img",
        strength=strength,
        timesteps=timesteps,
    )


def inpaint(
    model: ModelBundle,
    image: ImageInput,
    mask: ImageInput,
    prompt: str | Sequence[str],
    *,
    strength: float = 1.0,
    negative: str | Sequence[str] = "",
    seed: int | Sequence[int] = 0,
    steps: int = 30,
    guidance: float = 7.5,
    scheduler: str = "ddim",
    width: int | None = None,
    height: int | None = None,
    hooks: Sequence[Hook] = (),
    eta: float = 0.0,
    progress: bool = False,
) -> Generation:
    """Repaint the white part of `mask`. A 9-channel inpainting UNet is given the mask and masked image;
    any other model gets blended-latent inpainting (outside the mask the latent is the source's, noised
    to the current step)."""
    _check_strength(strength)
    if _size_of(mask) != _size_of(image):
        raise InvalidInput(f"mask is {_fmt(_size_of(mask))} but the image is {_fmt(_size_of(image))}; they must match")
    pixels, width, height = _preprocess(model, image, width, height)
    req = _request(model, prompt, negative, seed, steps, guidance, scheduler, width, height)
    sched = make_scheduler(req.scheduler, model.scheduler.config)
    timesteps = strength_timesteps(model, sched, req.steps, strength)
    generators = seeded_generators(req.seeds)
    batch = len(req.prompts)
    pixels = pixels.expand(batch, -1, -1, -1)
    mask_pixels = VaeImageProcessor(
        vae_scale_factor=model.vae_scale_factor, do_normalize=False, do_binarize=True, do_convert_grayscale=True
    ).preprocess(mask, height=height, width=width)
    latent_size = (height // model.vae_scale_factor, width // model.vae_scale_factor)
    latent_mask = torch.nn.functional.interpolate(mask_pixels, size=latent_size).to(model.device, model.dtype)
    latent_mask = latent_mask.expand(batch, -1, -1, -1)
    start = timesteps[:1].repeat(batch)
    full_strength = strength == 1.0

    if model.is_inpainting:
        source = None if full_strength else encode_images(model, pixels, generators)
        noise = initial_noise(model, (batch, model.latent_channels, *latent_size), generators)
        latents = noise * sched.init_noise_sigma if full_strength else sched.add_noise(source, noise, start)
        masked_latents = encode_images(model, pixels * (mask_pixels < 0.5), generators)
        extra = torch.cat([latent_mask, masked_latents], dim=1)
        return _run(model, req, sched, latents, generators, hooks, eta, progress, "inpaint", strength, timesteps, extra)

    source = encode_images(model, pixels, generators)
    noise = initial_noise(model, tuple(source.shape), generators)
    latents = noise * sched.init_noise_sigma if full_strength else sched.add_noise(source, noise, start)
    blend = LatentBlend(source, latent_mask, noise)
    return _run(model, req, sched, latents, generators, [blend, *hooks], eta, progress, "inpaint", strength, timesteps)


class LatentBlend(Hook):
    """Blended-latent inpainting: after each step, outside the mask the latent is the source latent
    noised to the level the latents are now at (the next timestep; clean after the last step)."""

    def __init__(self, source: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor) -> None:
        self.source, self.mask, self.noise = source, mask, noise  # mask: 1 = repaint

    def on_step_end(self, ctx: StepContext, latents: torch.Tensor) -> torch.Tensor:
        keep = self.source
        if ctx.index < ctx.num_steps - 1:
            next_t = ctx.timesteps[ctx.index + 1]
            keep = ctx.scheduler.add_noise(self.source, self.noise, next_t.reshape(1))
        return (1 - self.mask) * keep + self.mask * latents


def _run(
    model: ModelBundle,
    req: _Request,
    sched,
    latents: torch.Tensor,
    generators,
    hooks: Sequence[Hook],
    eta: float,
    progress: bool,
    mode: str,
    strength: float | None = None,
    timesteps: torch.Tensor | None = None,
    extra: torch.Tensor | None = None,
) -> Generation:
    if req.guidance > 1 and not model.embeds_guidance:
        cond, uncond = encode_pair(model, req.prompts, req.negatives)
    else:
        cond, uncond = encode_text(model, req.prompts), None
    final = denoise(
        model, sched, latents, cond, uncond, req.guidance, hooks,
        timesteps=timesteps, generators=generators, eta=eta, unet_extra_channels=extra, progress=progress,
    )  # fmt: skip
    pixels = decode_pixels(model, final)
    base = GenerationParams(
        prompt="", negative_prompt="", seed=0, steps=req.steps, guidance=req.guidance, scheduler=req.scheduler,
        width=req.width, height=req.height, model_hash=model.model_hash, mode=mode, strength=strength,
    )  # fmt: skip
    params = [
        replace(base, prompt=p, negative_prompt=n, seed=s) for p, n, s in zip(req.prompts, req.negatives, req.seeds)
    ]
    return Generation(pixels=pixels, latents=final, params=params)


def _request(model, prompt, negative, seed, steps, guidance, scheduler, width, height) -> _Request:
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise InvalidInput("no prompt given")
    negatives = _broadcast(negative, len(prompts), "negative prompts")
    seeds = [int(s) for s in _broadcast(seed, len(prompts), "seeds")]
    if steps < 1:
        raise InvalidInput(f"steps must be at least 1, got {steps}")
    if not finite(guidance, "guidance") >= 0:
        raise InvalidInput(f"guidance must be >= 0, got {guidance}")
    scheduler = scheduler_key(scheduler)
    native_height, native_width = model.default_height_width
    width = width or native_width
    height = height or native_height
    factor = model.vae_scale_factor
    for name, value in (("width", width), ("height", height)):
        if value <= 0 or value % factor:
            raise InvalidInput(f"{name} {value} is not a positive multiple of {factor} (the model's VAE factor)")
    return _Request(prompts, negatives, seeds, steps, float(guidance), scheduler, width, height)


def _broadcast(value, count: int, what: str) -> list:
    if isinstance(value, (str, int)):
        return [value] * count
    values = list(value)
    if len(values) != count:
        raise InvalidInput(f"got {len(values)} {what} for {count} prompts")
    return values


def _check_strength(strength: float) -> None:
    if not 0 < strength <= 1:
        raise InvalidInput(f"strength must be in (0, 1], got {strength}")


def strength_timesteps(model: ModelBundle, sched, steps: int, strength: float) -> torch.Tensor:
    """The last `int(steps * strength)` timesteps: strength is how much of the schedule is redrawn."""
    sched.set_timesteps(steps, device=model.device)
    kept = min(int(steps * strength), steps)
    if kept < 1:
        raise InvalidInput(f"strength {strength} with {steps} steps leaves no step to run; raise either")
    start = (steps - kept) * sched.order
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(start)
    return sched.timesteps[start:]


def _preprocess(model: ModelBundle, image: ImageInput, width: int | None, height: int | None):
    """Image -> ((1, 3, H, W) in [-1, 1], W, H); sizes default to the image's, rounded down to the VAE factor."""
    pixels = prepare_image(model, image, width, height)
    return pixels, pixels.shape[-1], pixels.shape[-2]


def _size_of(image: ImageInput) -> tuple[int, int]:
    """(width, height) of a PIL image, an HWC array or a CHW/BCHW tensor."""
    if isinstance(image, PIL.Image.Image):
        return image.size
    shape = tuple(image.shape)
    if isinstance(image, np.ndarray):
        return (shape[1], shape[0]) if image.ndim >= 2 else shape
    return (shape[-1], shape[-2])


def _fmt(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
