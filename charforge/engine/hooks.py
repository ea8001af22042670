"""The plug-in points of the one sampling loop.

Every feature (classifier-free guidance variants, null-text, attention control, inpainting blends,
loss guidance, inversion offsets) is a `Hook`. The loop calls each hook at fixed moments; a hook
overrides only the methods it needs. New features add hooks, not loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class StepContext:
    """What a hook may read at one denoising step.

    `latents` has one row per image in the batch (the unconditional half of classifier-free guidance
    is internal to the loop). `extras` is a scratch dict that hooks may use to talk to each other
    within a call (for example a local-blend mask computed by an attention store).
    """

    index: int
    timestep: torch.Tensor
    num_steps: int
    latents: torch.Tensor
    scheduler: Any
    prediction_type: str
    guidance_scale: float
    extras: dict[str, Any] = field(default_factory=dict)


class Hook:
    """Base class: every method is a no-op, so a hook implements only what it changes."""

    def attention_processors(self, unet: Any) -> dict[str, Any] | None:
        """Processors to install on `unet` for the duration of the call (restored afterwards, even on error)."""
        return None

    def on_begin(self, ctx: StepContext) -> None:
        """Called once before the first step (ctx.index == 0)."""

    def on_step_begin(self, ctx: StepContext) -> None:
        """Called at the start of each step, before the UNet."""

    def uncond_embeddings(self, ctx: StepContext) -> torch.Tensor | None:
        """Per-step unconditional embeddings (shape (1 or B, L, D)) replacing the negative prompt's."""
        return None

    def before_scheduler_step(
        self, ctx: StepContext, latents: torch.Tensor, noise_pred: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Adjust latents and/or the guided model output before `scheduler.step` (loss guidance)."""
        return latents, noise_pred

    def on_step_end(self, ctx: StepContext, latents: torch.Tensor) -> torch.Tensor:
        """Latent callback after `scheduler.step` (mask blending, local blend, inversion offsets)."""
        return latents

    def on_end(self, ctx: StepContext) -> None:
        """Called once after the last step, also when the call raised."""
