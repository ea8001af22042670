"""Null-text inversion (Mokady et al. 2023): per step, optimise the unconditional embedding so the
guided step lands on the guidance-1 pivot trajectory. Accurate, slow (an optimisation per step).

Optimisation is an unconditional-embedding hook of the one loop; the fitted embeddings are stored
as `uncond_embeddings` (steps, L, D) and supplied again, for every row, at replay (as in the paper).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler

from charforge.engine.hooks import Hook, StepContext
from charforge.engine.inversion.base import FollowInversion, InversionMethod
from charforge.engine.inversion.result import InversionResult
from charforge.engine.loading import ModelBundle
from charforge.engine.loop import denoise
from charforge.engine.prompts import PromptEmbeds, encode_negative

EMBEDDINGS = "uncond_embeddings"


class NullTextOptimizer(Hook):
    """Null-text inversion as an unconditional-embedding hook: optimise, then let the loop step.

    At step i the loop's latent z_i is given; Adam tunes the unconditional embedding (warm-started
    from step i-1) so that the guided DDIM step from z_i lands on the pivot z*_{i+1}. The loop then
    takes that step with the tuned embedding, so the next optimisation starts where sampling will be.
    """

    def __init__(
        self,
        model: ModelBundle,
        scheduler: DDIMScheduler,
        cond: PromptEmbeds,
        uncond: PromptEmbeds,
        pivot: torch.Tensor,
        guidance: float,
        inner_steps: int = 10,
        epsilon: float = 1e-5,
    ) -> None:
        self.model, self.scheduler, self.cond, self.pivot = model, scheduler, cond, pivot
        self.negative = uncond  # pooled and size conditioning stay the negative prompt's (SDXL)
        self.current = uncond.embeds.detach().clone()
        self.guidance, self.inner_steps, self.epsilon = guidance, inner_steps, epsilon
        self.embeddings: list[torch.Tensor] = []
        self.losses: list[tuple[float, float]] = []  # (first, last) inner loss per step

    def uncond_embeddings(self, ctx: StepContext) -> torch.Tensor:
        i, t, z = ctx.index, ctx.timestep, ctx.latents
        unet, target = self.model.unet, self.pivot[i + 1 : i + 2].to(z)
        model_input = self.scheduler.scale_model_input(z, t)
        cond, negative = self.cond.for_latents(self.model, z), self.negative.for_latents(self.model, z)
        eps_cond = unet(model_input, t, **cond.unet_kwargs(), return_dict=False)[0]
        uncond = self.current.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([uncond], lr=1e-2 * (1.0 - i / 100.0))
        first = loss_value = float("nan")
        with torch.enable_grad():
            for _ in range(self.inner_steps):
                eps_uncond = unet(model_input, t, **negative.with_embeds(uncond).unet_kwargs(), return_dict=False)[0]
                guided = eps_uncond + self.guidance * (eps_cond - eps_uncond)
                stepped = self.scheduler.step(guided, t, z, return_dict=False)[0]
                loss = F.mse_loss(stepped, target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_value = loss.item()
                first = loss_value if first != first else first
                if loss_value < self.epsilon + i * 2e-5:
                    break
        self.current = uncond.detach()
        self.embeddings.append(self.current)
        self.losses.append((first, loss_value))
        return self.current


class _FollowEmbeddings(FollowInversion):
    def uncond_embeddings(self, ctx: StepContext) -> torch.Tensor:
        return self.inversion.step_tensors[EMBEDDINGS][ctx.index : ctx.index + 1]


class NullTextInversion(InversionMethod):
    name = "null-text"
    follow = _FollowEmbeddings

    def correct(
        self, model: ModelBundle, result: InversionResult, scheduler: DDIMScheduler, cond: PromptEmbeds,
        *, progress: bool = False, inner_steps: int = 10, early_stop: float = 1e-5, **options: Any,
    ) -> None:  # fmt: skip
        """`inner_steps` Adam steps per sampling step at most, fewer once the loss is below `early_stop`."""
        uncond = encode_negative(model, [result.negative_prompt], cond.chunks)
        inner = DDIMScheduler.from_config(scheduler.config)  # its own instance: the loop's scheduler stays untouched
        inner.set_timesteps(result.steps, device=scheduler.timesteps.device)
        optimizer = NullTextOptimizer(
            model, inner, cond, uncond, result.trajectory, result.guidance, inner_steps, early_stop
        )
        denoise(model, scheduler, result.trajectory[:1], cond, uncond, result.guidance, [optimizer], progress=progress)
        result.step_tensors[EMBEDDINGS] = torch.cat(optimizer.embeddings)
        result.extra["losses"] = optimizer.losses
