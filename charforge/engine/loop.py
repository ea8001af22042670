"""THE sampling loop. Every charforge image (txt2img, img2img, inpainting, edits, inversion replays)
comes out of `denoise`; features plug in as `Hook`s instead of growing loops of their own.

One step, top to bottom:
  1. hooks see the step begin (controllers advance, masks update);
  2. the loop decides which rows go to the UNet: every row's conditional pass, plus the
     unconditional pass of rows that use classifier-free guidance (hooks may skip rows or drop their
     unconditional pass; `StepContext.layout` says where each row sits in the batch);
  3. one UNet call on that batch, then `uncond + w * (cond - uncond)`;
  4. hooks may adjust latents and the guided prediction (loss guidance);
  5. `scheduler.step`;
  6. hooks may rewrite the new latents (inpainting blend, local blend, inversion offsets).
Attention processors requested by hooks are installed for the call and restored afterwards, even when
the call raises.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.utils.torch_utils import randn_tensor

from charforge.engine.hooks import BatchLayout, Hook, StepContext
from charforge.engine.loading import ModelBundle, vae_latents
from charforge.engine.prompts import PromptEmbeds
from charforge.progress import progress as progress_bar
from charforge.validation import finite

Generators = torch.Generator | list[torch.Generator] | None


def seeded_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per row: CPU draws are identical on every device, so a seed means one image."""
    return [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]


def initial_noise(model: ModelBundle, shape: tuple[int, ...], generators: Generators) -> torch.Tensor:
    """Gaussian latents drawn exactly as diffusers' pipelines draw them (per-row generators allowed)."""
    return randn_tensor(shape, generator=generators, device=model.device, dtype=model.dtype)


def predict_x0(
    scheduler: Any,
    model_output: torch.Tensor,
    timestep: torch.Tensor | int,
    sample: torch.Tensor,
    prediction_type: str | None = None,
) -> torch.Tensor:
    """The clean latent the model implies at `timestep`, for any prediction type and scheduler family.

    DDPM-family schedulers (DDIM, DPM-Solver, LCM) keep `sample = sqrt(a) x0 + sqrt(1-a) eps`; the
    Karras family (Euler, LMS) keeps `sample = x0 + sigma * eps` and feeds the UNet `sample / sqrt(sigma^2+1)`.
    Both reduce to one (alpha, sigma) pair on the UNet's input scale, after which epsilon,
    v-prediction and sample-prediction models each have a closed form.
    """
    kind = prediction_type or scheduler.config.get("prediction_type", "epsilon")
    if kind == "sample":
        return model_output
    if _is_sigma_space(scheduler):
        sigma = _current_sigma(scheduler, timestep).to(sample.device, sample.dtype)
        scale = 1 / (sigma**2 + 1) ** 0.5
        alpha_sqrt, sigma_sqrt, model_input = scale, sigma * scale, sample * scale
    else:
        alpha_prod = scheduler.alphas_cumprod.to(sample.device)[int(timestep)].to(sample.dtype)
        alpha_sqrt, sigma_sqrt, model_input = alpha_prod**0.5, (1 - alpha_prod) ** 0.5, sample
    if kind == "epsilon":
        return (model_input - sigma_sqrt * model_output) / alpha_sqrt
    if kind == "v_prediction":
        return alpha_sqrt * model_input - sigma_sqrt * model_output
    raise ValueError(f"unsupported prediction_type {kind!r}")


def _is_sigma_space(scheduler: Any) -> bool:
    return float(scheduler.init_noise_sigma) != 1.0


def _current_sigma(scheduler: Any, timestep: torch.Tensor | int) -> torch.Tensor:
    index = scheduler.step_index
    if index is None:
        index = scheduler.index_for_timestep(torch.as_tensor(timestep).to(scheduler.timesteps.device))
    return scheduler.sigmas[index]


@contextmanager
def installed_processors(unet: Any, hooks: Sequence[Hook]) -> Iterator[None]:
    """Install the hooks' attention processors; always put the originals back."""
    wanted: dict[str, Any] = {}
    for hook in hooks:
        wanted.update(hook.attention_processors(unet) or {})
    if not wanted:
        yield
        return
    original = dict(unet.attn_processors)
    unknown = set(wanted) - set(original)
    if unknown:
        raise ValueError(f"attention processors for unknown layers: {sorted(unknown)[:3]}")
    try:
        unet.set_attn_processor({**original, **wanted})
        yield
    finally:
        unet.set_attn_processor(original)


def scheduler_step_kwargs(scheduler: Any, generators: Generators, eta: float) -> dict[str, Any]:
    """eta and generator go to `scheduler.step` only where accepted (as diffusers' pipelines do)."""
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs: dict[str, Any] = {}
    if "eta" in accepted:
        kwargs["eta"] = eta
    if "generator" in accepted:
        kwargs["generator"] = generators
    return kwargs


@torch.no_grad()
def denoise(
    model: ModelBundle,
    scheduler: Any,
    latents: torch.Tensor,
    cond: torch.Tensor | PromptEmbeds,
    uncond: torch.Tensor | PromptEmbeds | None,
    guidance_scale: float,
    hooks: Sequence[Hook] = (),
    *,
    timesteps: torch.Tensor | None = None,
    generators: Generators = None,
    eta: float = 0.0,
    unet_extra_channels: torch.Tensor | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Denoise `latents` (B rows, already at the first timestep's noise level) and return the final latents.

    `cond`/`uncond` are the prompts' and negatives' `PromptEmbeds` (B rows, or one row shared by all),
    or bare (B, L, D) embeddings for SD 1.x/2.x models; SDXL rows also carry pooled embeddings and,
    unless given, get the image's own size as `add_time_ids`. Every row the UNet sees (guided,
    unguided or, when skipped, none) takes its own conditioning. Guidance is applied when
    `guidance_scale > 1`, as in diffusers. `unet_extra_channels` (B, k, h, w) are appended to the
    scaled latents on the channel axis (mask + masked-image latents of 9-channel inpainting UNets).
    Runs under `no_grad`, not `inference_mode`, so hooks may `enable_grad` (loss guidance).
    """
    # Every render passes here, so this is where a NaN or infinite scale from any front end stops.
    guidance_scale, eta = finite(guidance_scale, "guidance"), finite(eta, "eta")
    timesteps = scheduler.timesteps if timesteps is None else timesteps
    batch = latents.shape[0]
    guided = uncond is not None and guidance_scale > 1 and not model.embeds_guidance
    cond = _conditioning(model, cond, latents).expand(batch)
    uncond = _conditioning(model, uncond, latents).expand(batch) if guided else None
    step_kwargs = scheduler_step_kwargs(scheduler, generators, eta)
    ctx = StepContext(
        index=0,
        timestep=timesteps[0],
        num_steps=len(timesteps),
        latents=latents,
        scheduler=scheduler,
        prediction_type=model.prediction_type,
        guidance_scale=guidance_scale,
        timesteps=timesteps,
        text_tokens=cond.embeds.shape[1],
    )
    with installed_processors(model.unet, hooks):
        try:
            for hook in hooks:
                hook.on_begin(ctx)
            for index, t in enumerate(progress_bar(timesteps, enabled=progress, desc="denoising")):
                ctx.index, ctx.timestep, ctx.latents = index, t, latents
                for hook in hooks:
                    hook.on_step_begin(ctx)

                skipped = {row for hook in hooks for row in hook.skip_rows(ctx)}
                cond_rows = tuple(row for row in range(batch) if row not in skipped)
                unguided = {row for hook in hooks for row in hook.unguided_rows(ctx)} if guided else set()
                uncond_rows = tuple(row for row in cond_rows if row not in unguided) if guided else ()
                ctx.layout = BatchLayout(uncond_rows=uncond_rows, cond_rows=cond_rows)

                step_uncond = _step_uncond(hooks, ctx, uncond, batch) if guided else None
                noise_pred = _guided_prediction(
                    model, scheduler, latents, t, cond, step_uncond, guidance_scale, ctx.layout, unet_extra_channels
                )
                for hook in hooks:
                    latents, noise_pred = hook.before_scheduler_step(ctx, latents, noise_pred)

                stepped = scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=False)[0]
                if skipped:
                    keep = sorted(skipped)
                    stepped[keep] = latents[keep]
                latents = stepped
                for hook in hooks:
                    latents = hook.on_step_end(ctx, latents)
        finally:
            ctx.latents = latents
            for hook in hooks:
                hook.on_end(ctx)
    return latents


def _conditioning(model: ModelBundle, embeds: torch.Tensor | PromptEmbeds, latents: torch.Tensor) -> PromptEmbeds:
    """Bare embeddings become `PromptEmbeds`, ready for the UNet on these latents."""
    return (PromptEmbeds(embeds) if isinstance(embeds, torch.Tensor) else embeds).for_latents(model, latents)


def _step_uncond(hooks: Sequence[Hook], ctx: StepContext, uncond: PromptEmbeds, batch: int) -> PromptEmbeds:
    """This step's unconditional rows: the negative prompt's unless a hook supplies token embeddings
    of its own (last wins); pooled and size conditioning stay the negative's."""
    for hook in hooks:
        override = hook.uncond_embeddings(ctx)
        if override is not None:
            uncond = uncond.with_embeds(override.expand(batch, -1, -1) if override.shape[0] == 1 else override)
    return uncond


def _guided_prediction(
    model: ModelBundle,
    scheduler: Any,
    latents: torch.Tensor,
    t: torch.Tensor,
    cond: PromptEmbeds,
    uncond: PromptEmbeds | None,
    guidance_scale: float,
    layout: BatchLayout,
    extra_channels: torch.Tensor | None,
) -> torch.Tensor:
    """One UNet call for every row of `layout`, combined into one guided prediction per latent row."""
    model_input = scheduler.scale_model_input(latents, t)
    if extra_channels is not None:
        model_input = torch.cat([model_input, extra_channels], dim=1)
    full = len(layout.cond_rows) == latents.shape[0]
    if full and len(layout.uncond_rows) == latents.shape[0]:
        # common case: the exact batch diffusers' pipelines build
        unet_input, embeds = torch.cat([model_input, model_input]), PromptEmbeds.cat([uncond, cond])
    else:
        uncond_rows, cond_rows = list(layout.uncond_rows), list(layout.cond_rows)
        unet_input = torch.cat([model_input[uncond_rows], model_input[cond_rows]])
        parts = [uncond.rows(uncond_rows), cond.rows(cond_rows)] if uncond_rows else [cond.rows(cond_rows)]
        embeds = PromptEmbeds.cat(parts)
    extra: dict[str, Any] = {}
    if model.embeds_guidance:
        extra["timestep_cond"] = guidance_embedding(model, guidance_scale, unet_input.shape[0])
    output = model.unet(unet_input, t, **embeds.unet_kwargs(), **extra, return_dict=False)[0]

    n_uncond = len(layout.uncond_rows)
    pred_uncond, pred_cond = output[:n_uncond], output[n_uncond:]
    if full and n_uncond == latents.shape[0]:
        return pred_uncond + guidance_scale * (pred_cond - pred_uncond)
    noise_pred = torch.zeros((latents.shape[0], *output.shape[1:]), device=output.device, dtype=output.dtype)
    noise_pred[list(layout.cond_rows)] = pred_cond
    if n_uncond:
        rows = list(layout.uncond_rows)
        noise_pred[rows] = pred_uncond + guidance_scale * (noise_pred[rows] - pred_uncond)
    return noise_pred


def guidance_embedding(model: ModelBundle, guidance_scale: float, rows: int) -> torch.Tensor:
    """(rows, time_cond_proj_dim) sinusoidal embedding of `guidance_scale - 1`, scaled by 1000 like a
    timestep: the input LCM students were distilled with (diffusers' LCM pipelines build the same)."""
    w = torch.full((rows,), (guidance_scale - 1) * 1000.0)
    embedding = get_timestep_embedding(w, model.unet.config.time_cond_proj_dim, flip_sin_to_cos=False,
                                       downscale_freq_shift=1)  # fmt: skip
    return embedding.to(device=model.device, dtype=model.dtype)


@torch.no_grad()
def encode_images(model: ModelBundle, images: torch.Tensor, generators: Generators = None) -> torch.Tensor:
    """Pixels in [-1, 1] (B, 3, H, W) -> scaled latents, sampling the VAE posterior like diffusers does."""
    images = images.to(device=model.device, dtype=model.vae.dtype)
    if isinstance(generators, list) and len(generators) > 1:
        parts = [vae_latents(model.vae.encode(images[i : i + 1]), generators[i]) for i in range(len(images))]
        latents = torch.cat(parts)
    else:
        generator = generators[0] if isinstance(generators, list) else generators
        latents = vae_latents(model.vae.encode(images), generator)  # a tiny autoencoder has no posterior
    return scale_latents(model, latents, encode=True).to(model.dtype)  # an upcast VAE answers in fp32


def decode_latents(model: ModelBundle, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> pixels in [-1, 1]; differentiable (loss guidance decodes x0 under grad)."""
    return model.vae.decode(scale_latents(model, latents.to(model.vae.dtype), encode=False), return_dict=False)[0]


def scale_latents(model: ModelBundle, latents: torch.Tensor, encode: bool) -> torch.Tensor:
    """SD VAEs scale latents to unit variance (`scaling_factor`); some newer ones also shift them, by
    one number (`shift_factor`) or per channel (`latents_mean`/`latents_std`, as SDXL pipelines read)."""
    config = model.vae.config
    scale = config.scaling_factor
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is not None and std is not None:
        shape = (1, len(mean), 1, 1)
        mean = torch.tensor(mean, device=latents.device, dtype=latents.dtype).view(shape)
        std = torch.tensor(std, device=latents.device, dtype=latents.dtype).view(shape)
        return (latents - mean) * scale / std if encode else latents * std / scale + mean
    shift = getattr(config, "shift_factor", None) or 0.0
    return (latents - shift) * scale if encode else latents / scale + shift
