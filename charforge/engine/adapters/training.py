"""The one fitting loop of look adapters: the denoising loss of the textual-inversion paper and of
diffusers' training examples, over a handful of pictures.

A picture is encoded once (and its mirror image too: the light augmentation); each step noises a batch
of latents at random timesteps (uniform, or with `timestep_bias` logit-normal as in diffusers' SD3
training utilities, a positive mean favouring the noisy timesteps where layout and silhouette form) and
asks the UNet, conditioned on the pictures' captions, to predict
what the scheduler's `prediction_type` names. What is trained (new token rows, LoRA matrices) is the
caller's: it hands over the parameters, a caption encoder and the UNet to run. Every `check_every`
steps the loss on a fixed set of (picture, timestep, noise) is measured and the best state kept, so an
interrupted run (Ctrl-C) still returns its best checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import PIL.Image
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from charforge.engine.loading import ModelBundle
from charforge.errors import InvalidInput

log = logging.getLogger(__name__)


@dataclass
class TrainingSet:
    """Clean latents of the pictures (and their mirror images) with one caption each."""

    latents: torch.Tensor  # (N, C, h, w) in the UNet's latent space
    captions: list[str]


@dataclass
class FitResult:
    """The best state seen (by the fixed check loss), and how the run went."""

    state: dict[str, torch.Tensor]
    best_loss: float
    steps: int
    seconds: float
    interrupted: bool


def training_set(
    model: ModelBundle, images: Sequence[PIL.Image.Image], captions: Sequence[str], *, mirror: bool = True
) -> TrainingSet:
    """Encode `images` at the model's native size (plus mirrored copies) with their captions."""
    from charforge.engine.images import prepare_image
    from charforge.engine.inversion import encode_mean

    if not images:
        raise InvalidInput("learning a look needs at least one picture")
    if len(captions) != len(images):
        raise InvalidInput(f"{len(captions)} captions for {len(images)} pictures")
    latents, texts = [], []
    with torch.no_grad():
        for image, caption in zip(images, captions):
            pixels = prepare_image(model, image.convert("RGB"))
            variants = [pixels, pixels.flip(-1)] if mirror else [pixels]
            for variant in variants:
                latents.append(encode_mean(model, variant).float())
                texts.append(caption)
    return TrainingSet(torch.cat(latents), texts)


def fit(
    model: ModelBundle,
    data: TrainingSet,
    params: Sequence[torch.nn.Parameter],
    encode: Callable[[Sequence[str]], torch.Tensor],
    snapshot: Callable[[], dict[str, torch.Tensor]],
    *,
    unet: Any = None,
    steps: int,
    lr: float,
    batch: int = 4,
    seed: int = 0,
    check_every: int = 25,
    timestep_bias: float | None = None,
    progress: bool = False,
    desc: str = "learn",
) -> FitResult:
    """AdamW on `params` against the noise-prediction loss; returns the best `snapshot()` by check loss."""
    from diffusers import DDPMScheduler

    if steps < 1:
        raise InvalidInput(f"steps must be at least 1, got {steps}")
    if not lr > 0:
        raise InvalidInput(f"the learning rate must be positive, got {lr}")
    unet = model.unet if unet is None else unet
    noise_scheduler = DDPMScheduler.from_config(model.scheduler.config)
    gen = torch.Generator().manual_seed(seed)
    check = _check_set(noise_scheduler, data, gen)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    best_loss, best = _check_loss(unet, noise_scheduler, check, encode), snapshot()
    start, done, interrupted = time.monotonic(), 0, False
    bar = tqdm(total=steps, desc=desc, unit="step", disable=not progress, mininterval=1.0)
    try:
        for step in range(1, steps + 1):
            for group in optimizer.param_groups:  # cosine decay to 10%: late steps refine instead of jumping
                group["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - 1) / steps)))
            idx = torch.randint(len(data.captions), (min(batch, len(data.captions)),), generator=gen)
            captions = [data.captions[i] for i in idx]
            loss = _loss(unet, noise_scheduler, data.latents[idx], captions, encode, gen, timestep_bias)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done = step
            if step % check_every == 0 or step == steps:
                current = _check_loss(unet, noise_scheduler, check, encode)
                if current < best_loss:
                    best_loss, best = current, snapshot()
                bar.set_postfix(loss=f"{loss.item():.4f}", check=f"{current:.4f}", best=f"{best_loss:.4f}")
            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
        log.warning("%s interrupted after %d steps; keeping the best checkpoint (loss %.4f)", desc, done, best_loss)
    finally:
        bar.close()
    seconds = time.monotonic() - start
    log.info("%s: %d steps in %.0f s, best check loss %.4f", desc, done, seconds, best_loss)
    return FitResult(best, best_loss, done, seconds, interrupted)


def _target(noise_scheduler: Any, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return noise_scheduler.get_velocity(latents, noise, t)
    raise InvalidInput(f"cannot learn a look on a model predicting {kind!r}")


def _timesteps(noise_scheduler: Any, count: int, bias: float | None, gen: torch.Generator) -> torch.Tensor:
    """Uniform timesteps, or logit-normal ones centred at sigmoid(`bias`) of the schedule (std 1)."""
    total = noise_scheduler.config.num_train_timesteps
    if bias is None:
        return torch.randint(total, (count,), generator=gen)
    from diffusers.training_utils import compute_density_for_timestep_sampling

    u = compute_density_for_timestep_sampling("logit_normal", count, logit_mean=bias, logit_std=1.0, generator=gen)
    return (u * total).long().clamp(0, total - 1)


def _loss(
    unet: Any,
    noise_scheduler: Any,
    latents: torch.Tensor,
    captions: Sequence[str],
    encode: Callable[[Sequence[str]], torch.Tensor],
    gen: torch.Generator,
    bias: float | None = None,
) -> torch.Tensor:
    noise = torch.randn(latents.shape, generator=gen).to(latents.device)
    t = _timesteps(noise_scheduler, len(latents), bias, gen).to(latents.device)
    return _predict_loss(unet, noise_scheduler, latents, noise, t, captions, encode)


def _predict_loss(unet, noise_scheduler, latents, noise, t, captions, encode) -> torch.Tensor:
    noisy = noise_scheduler.add_noise(latents, noise, t)
    cond = encode(captions)
    dtype = next(unet.parameters()).dtype
    pred = unet(noisy.to(dtype), t, encoder_hidden_states=cond.to(dtype)).sample.float()
    return F.mse_loss(pred, _target(noise_scheduler, latents, noise, t))


def _check_set(noise_scheduler: Any, data: TrainingSet, gen: torch.Generator) -> tuple:
    """Every picture at four fixed timesteps spread over the schedule, with fixed noise."""
    total = noise_scheduler.config.num_train_timesteps
    rows = torch.arange(len(data.captions)).repeat_interleave(4)
    t = torch.tensor([int(total * q) for q in (0.1, 0.35, 0.6, 0.85)]).repeat(len(data.captions))
    noise = torch.randn((len(rows), *data.latents.shape[1:]), generator=gen).to(data.latents.device)
    return data.latents[rows], noise, t.to(data.latents.device), [data.captions[i] for i in rows]


@torch.no_grad()
def _check_loss(unet, noise_scheduler, check: tuple, encode) -> float:
    latents, noise, t, captions = check
    return float(_predict_loss(unet, noise_scheduler, latents, noise, t, captions, encode))
