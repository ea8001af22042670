"""Direct inversion (Ju et al. 2024, PnP Inversion): record per step the offset between the inverted
trajectory and where the guided step actually lands, and add it back to the source branch only.

Exact for the source at one extra guided pass at inversion time; the default method. The offsets are
stored as `offsets` (steps, C, h, w). At replay the source needs no unconditional pass: its latent
after a step is by construction the trajectory's next one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from diffusers import DDIMScheduler

from charforge.engine.hooks import Hook, StepContext
from charforge.engine.inversion.base import FollowInversion, InversionMethod
from charforge.engine.inversion.result import InversionResult
from charforge.engine.loading import ModelBundle
from charforge.engine.loop import denoise
from charforge.engine.prompts import PromptEmbeds, encode_negative

OFFSETS = "offsets"


class OffsetRecorder(Hook):
    """After each guided step, record how far it landed from the inverted trajectory, then put the
    latent back on the trajectory (exactly what adding the offset does)."""

    def __init__(self, trajectory: torch.Tensor) -> None:
        self.trajectory = trajectory
        self.offsets: list[torch.Tensor] = []

    def on_step_end(self, ctx: StepContext, latents: torch.Tensor) -> torch.Tensor:
        target = self.trajectory[ctx.index + 1 : ctx.index + 2].to(latents)
        self.offsets.append((target - latents).detach().clone())
        return target


class FollowOffsets(FollowInversion):
    """Adds the recorded offset to row 0 after each guided step (or puts it on the trajectory when the
    step left it out or unguided).

    `offset_targets` adds the same per-step offsets to the target rows too, the way edit-friendly DDPM
    inversion reuses the source's noise maps for the edit: the guidance drift the offsets cancel is
    shared by prompts that differ in a few words, so identical prompts give the source image back
    exactly and similar prompts stay on its trajectory. The paper's method (source only) is the default.
    """

    def __init__(
        self,
        inversion: InversionResult,
        needs_source: Callable[[int], bool] | None = None,
        shortcut: bool = False,
        offset_targets: bool = False,
    ) -> None:
        super().__init__(inversion, needs_source, shortcut)
        self.offset_targets = offset_targets

    def unguided_rows(self, ctx: StepContext) -> Sequence[int]:
        return (0,) if self.shortcut else ()

    def on_step_end(self, ctx: StepContext, latents: torch.Tensor) -> torch.Tensor:
        offset = self.inversion.step_tensors[OFFSETS][ctx.index]
        guided = ctx.layout is None or 0 in ctx.layout.uncond_rows
        if self.source_computed(ctx) and guided:
            latents = latents.clone()
            latents[0] = latents[0] + offset.to(latents)
        else:
            latents = self.put_on_trajectory(latents, ctx.index)
        if self.offset_targets:
            latents = latents.clone()
            latents[1:] = latents[1:] + offset.to(latents)
        return latents


class DirectInversion(InversionMethod):
    name = "direct"

    def correct(
        self, model: ModelBundle, result: InversionResult, scheduler: DDIMScheduler, cond: PromptEmbeds,
        *, progress: bool = False, **options: Any,
    ) -> None:  # fmt: skip
        uncond = encode_negative(model, [result.negative_prompt], cond.chunks)
        recorder = OffsetRecorder(result.trajectory)
        denoise(model, scheduler, result.trajectory[:1], cond, uncond, result.guidance, [recorder], progress=progress)
        result.step_tensors[OFFSETS] = torch.cat(recorder.offsets)

    def replay_hooks(
        self,
        inversion: InversionResult,
        *,
        needs_source: Callable[[int], bool] | None = None,
        shortcut: bool = False,
        offset_targets: bool = False,
        **options: Any,
    ) -> list[Hook]:
        return [FollowOffsets(inversion, needs_source, shortcut, offset_targets)]
