"""The plug-in points of the one sampling loop.

Every feature (classifier-free guidance variants, null-text, attention control, inpainting blends,
loss guidance, inversion offsets) is a `Hook`. The loop calls each hook at fixed moments; a hook
overrides only the methods it needs. New features add hooks, not loops.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class BatchLayout:
    """Which image rows went into this step's UNet batch, and where.

    The UNet batch is `uncond_rows` (the unconditional pass of those rows) followed by `cond_rows`.
    Normally both hold every row; they shrink when hooks skip rows (`Hook.skip_rows`) or drop the
    unconditional pass of some rows (`Hook.unguided_rows`). Attention processors read this to find,
    for example, the source and target rows of an edit inside the batch they are given.
    """

    uncond_rows: tuple[int, ...]
    cond_rows: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.uncond_rows) + len(self.cond_rows)

    def position(self, row: int, conditional: bool = True) -> int | None:
        """Index of image `row`'s conditional (or unconditional) pass in the UNet batch, None if absent."""
        if conditional:
            return len(self.uncond_rows) + self.cond_rows.index(row) if row in self.cond_rows else None
        return self.uncond_rows.index(row) if row in self.uncond_rows else None


@dataclass
class StepContext:
    """What a hook may read at one denoising step.

    `latents` has one row per image in the batch (the unconditional half of classifier-free guidance
    is internal to the loop). `timesteps` is the call's whole schedule; `layout` is (re)computed
    after `on_step_begin` and before the UNet call. `text_tokens` is the conditioning's sequence
    length, the key count of every cross-attention (77 per prompt chunk).
    """

    index: int
    timestep: torch.Tensor
    num_steps: int
    latents: torch.Tensor
    scheduler: Any
    prediction_type: str
    guidance_scale: float
    timesteps: torch.Tensor | None = None
    layout: BatchLayout | None = None
    text_tokens: int = 77


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

    def skip_rows(self, ctx: StepContext) -> Iterable[int]:
        """Rows not denoised this step: left out of the UNet batch, their latents kept as they are.

        Lets an edit stop paying for a source branch that no controller needs any more. Skip a row
        for good: multistep schedulers (dpm++, lms) keep no history for the steps a row sat out.
        """
        return ()

    def unguided_rows(self, ctx: StepContext) -> Iterable[int]:
        """Rows that need no unconditional pass this step (their prediction is the conditional one)."""
        return ()

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
