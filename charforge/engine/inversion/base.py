"""What every inversion method shares: the DDIM grids, the inverted trajectory, and the method interface.

An inversion finds the noise (and per-step corrections) from which the sampler redraws a given image,
so the image can be redrawn with any prompt and stay the same picture. Every method starts the same
way: diffusers' `DDIMInverseScheduler` run through the one sampling loop (`denoise`) at guidance 1
gives the trajectory from the clean latent up to x_T. Methods differ in what they fit along it for
guided redraws (`InversionMethod.correct`), which embeddings the source is replayed with
(`source_embeddings`) and which hooks keep the source on the trajectory at replay (`replay_hooks`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler

from charforge.engine.hooks import Hook, StepContext
from charforge.engine.inversion.result import InversionResult
from charforge.engine.loading import ModelBundle, vae_latents
from charforge.engine.loop import denoise, scale_latents
from charforge.engine.prompts import PromptEmbeds, encode_negative, encode_text
from charforge.errors import InvalidInput, ModelLoadError, StaleIdentity

log = logging.getLogger(__name__)


def inversion_schedulers(model: ModelBundle, steps: int) -> tuple[DDIMScheduler, DDIMInverseScheduler]:
    """A forward DDIM and its inverse on the same grid, built from the model's own scheduler config.

    Two traps are closed here. `DDIMInverseScheduler` shifts its grid by `steps_offset` like the
    forward one only when both come from the same config; built with defaults (offset 0) its steps
    sit one timestep off the sampler's. And configs of non-DDIM samplers lack `clip_sample`, whose
    DDIM default (True) would clamp latents to [-1, 1]. The grids are checked to line up exactly.
    """
    if steps < 1:
        raise InvalidInput(f"steps must be at least 1, got {steps}")
    config = dict(model.scheduler.config)
    if config.get("timestep_spacing", "leading") not in ("leading", "trailing"):
        config["timestep_spacing"] = "leading"  # the only grids DDIMInverseScheduler can mirror
    forward = DDIMScheduler.from_config(config, clip_sample=False)
    inverse = DDIMInverseScheduler.from_config(config, clip_sample=False)
    forward.set_timesteps(steps, device=model.device)
    inverse.set_timesteps(steps, device=model.device)
    if not torch.equal(inverse.timesteps.flip(0).cpu(), forward.timesteps.cpu()):
        raise ModelLoadError(
            f"the model's scheduler config gives inverse timesteps {inverse.timesteps[:3].tolist()}... that do not "
            f"mirror the sampler's {forward.timesteps.flip(0)[:3].tolist()}...; cannot invert with it"
        )
    return forward, inverse


@torch.no_grad()
def encode_mean(model: ModelBundle, pixels: torch.Tensor) -> torch.Tensor:
    """The VAE posterior's mean, scaled: inversion must be deterministic, so no posterior sample (a tiny
    autoencoder's encoding is deterministic already)."""
    encoded = model.vae.encode(pixels.to(model.device, model.vae.dtype))
    return scale_latents(model, vae_latents(encoded, sample_mode="argmax"), encode=True).to(model.dtype)


def check_model(model: ModelBundle, inversion: InversionResult) -> None:
    if model.model_hash != inversion.model_hash:
        raise StaleIdentity(
            f"inversion was made with model {inversion.model_hash[:10]} but the loaded model is "
            f"{model.model_hash[:10]}; invert the image again with this model"
        )


class TrajectoryRecorder(Hook):
    """Keeps the latent after every step of a loop call."""

    def __init__(self) -> None:
        self.latents: list[torch.Tensor] = []

    def on_step_end(self, ctx: StepContext, latents: torch.Tensor) -> torch.Tensor:
        self.latents.append(latents.detach().clone())
        return latents


class FollowInversion(Hook):
    """Keeps row 0 of a loop call (the source branch) on the inversion.

    With `shortcut`, whenever `needs_source(step)` says no controller reads the source's attention,
    row 0 is left out of the UNet batch and set from the trajectory instead. Methods subclass this to
    replay what they fitted (per-step embeddings, offsets) and to drop work the source does not need.
    """

    def __init__(
        self, inversion: InversionResult, needs_source: Callable[[int], bool] | None = None, shortcut: bool = False
    ) -> None:
        self.inversion = inversion
        self.needs_source = needs_source
        self.shortcut = shortcut

    def skip_rows(self, ctx: StepContext) -> Sequence[int]:
        if not self.shortcut:
            return ()
        needed = self.needs_source is not None and self.needs_source(ctx.index)
        return () if needed else (0,)

    @staticmethod
    def source_computed(ctx: StepContext) -> bool:
        return ctx.layout is None or 0 in ctx.layout.cond_rows

    def put_on_trajectory(self, latents: torch.Tensor, index: int) -> torch.Tensor:
        """`latents` with row 0 put on the trajectory after step `index`."""
        latents = latents.clone()
        latents[0] = self.inversion.trajectory[index + 1].to(latents)
        return latents

    def on_step_end(self, ctx: StepContext, latents: torch.Tensor) -> torch.Tensor:
        return latents if self.source_computed(ctx) else self.put_on_trajectory(latents, ctx.index)


class InversionMethod:
    """One inversion method, registered by `name` (see `charforge.engine.inversion.registry`).

    The defaults are plain DDIM inversion: nothing fitted, the source replayed with its prompt and
    negative prompt, and `follow` (a `FollowInversion`) keeping it on the trajectory. Options a method
    does not use are ignored, so one call can carry the options of several methods.
    """

    name: ClassVar[str]
    follow: ClassVar[type[FollowInversion]] = FollowInversion

    def invert(
        self,
        model: ModelBundle,
        clean: torch.Tensor,
        prompt: str,
        *,
        steps: int,
        guidance: float,
        negative_prompt: str = "",
        progress: bool = False,
        **options: Any,
    ) -> InversionResult:
        """Invert an image latent (1, C, h, w): the DDIM trajectory, then the method's corrections."""
        clean = clean.to(model.device, model.dtype)
        forward, inverse = inversion_schedulers(model, steps)
        cond = encode_text(model, [prompt])
        recorder = TrajectoryRecorder()
        denoise(model, inverse, clean, cond, None, 1.0, [recorder], timesteps=inverse.timesteps, progress=progress)
        trajectory = torch.cat([clean, *recorder.latents]).flip(0)  # sampling order: x_T first
        factor = model.vae_scale_factor
        result = InversionResult(
            method=self.name, prompt=prompt, negative_prompt=negative_prompt, steps=steps, guidance=float(guidance),
            model_hash=model.model_hash, width=clean.shape[-1] * factor, height=clean.shape[-2] * factor,
            timesteps=[int(t) for t in forward.timesteps], trajectory=trajectory,
        )  # fmt: skip
        self.correct(model, result, forward, cond, progress=progress, **options)
        log.info("inverted %dx%d image with %s in %d steps", result.width, result.height, self.name, steps)
        return result

    def correct(
        self, model: ModelBundle, result: InversionResult, scheduler: DDIMScheduler, cond: PromptEmbeds,
        *, progress: bool = False, **options: Any,
    ) -> None:  # fmt: skip
        """Fit what guided redraws need along `result.trajectory` into `result.step_tensors`/`extra`."""

    def source_embeddings(
        self, model: ModelBundle, inversion: InversionResult, source_prompt: str | None = None
    ) -> tuple[PromptEmbeds, PromptEmbeds]:
        """(cond, uncond) the source branch is replayed with (`source_prompt` defaults to the inverted one)."""
        source = inversion.prompt if source_prompt is None else source_prompt
        cond = encode_text(model, [source])
        return cond, encode_negative(model, [inversion.negative_prompt], cond.chunks)

    def replay_hooks(
        self,
        inversion: InversionResult,
        *,
        needs_source: Callable[[int], bool] | None = None,
        shortcut: bool = False,
        **options: Any,
    ) -> list[Hook]:
        """The hooks that keep row 0 on the inversion during a replay (they run before any other hook)."""
        return [self.follow(inversion, needs_source, shortcut)]
