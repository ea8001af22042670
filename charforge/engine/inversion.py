"""Inversion: find the noise (and per-step corrections) from which the sampler redraws a given image.

An image is inverted once and then redrawn with any prompt, so the character stays the same person.
Plain DDIM inversion runs the sampler backwards; it reconstructs well at guidance 1, but edits need
classifier-free guidance (7.5), which pushes the trajectory off course. Three fixes are offered:

- `null-text` (Mokady et al. 2023): per step, optimise the unconditional embedding so the guided step
  lands on the guidance-1 pivot trajectory. Accurate, slow (an optimisation per step).
- `negative-prompt` (Miyake et al. 2023): use the source prompt's embedding as the unconditional one;
  guidance then cancels for the source. Free, about as good as guidance-1 DDIM.
- `direct` (Ju et al. 2024, PnP Inversion): record per step the offset between the inverted
  trajectory and where the guided step actually lands, and add it back to the source branch only.
  Exact for the source, one extra guided pass at inversion time; the default.

Every pass runs through the one sampling loop: inversion is `denoise` with diffusers'
`DDIMInverseScheduler` as the sampler, null-text optimisation is an unconditional-embedding hook and
offsets are a latent callback. A result is serialisable (safetensors + JSON metadata).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import DDIMInverseScheduler, DDIMScheduler
from diffusers.image_processor import VaeImageProcessor
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from charforge.engine.hooks import Hook, StepContext
from charforge.engine.loading import ModelBundle
from charforge.engine.loop import decode_latents, denoise
from charforge.engine.prompts import encode_prompts
from charforge.errors import IntegrityError, InvalidInput, ModelLoadError, NotFound, StaleIdentity
from charforge.files import atomic_write
from charforge.validation import finite

log = logging.getLogger(__name__)

METHODS = ("ddim", "null-text", "negative-prompt", "direct")
DEFAULT_METHOD = "direct"
FORMAT_VERSION = 1
TENSORS_FILE, META_FILE = "inversion.safetensors", "inversion.json"

ImageInput = PIL.Image.Image | np.ndarray | torch.Tensor


@dataclass
class InversionResult:
    """Everything needed to redraw an inverted image: trajectory, per-step corrections, settings.

    `trajectory` is in sampling order: row 0 is x_T (the starting noise), row i the latent before
    sampling step i, the last row the clean image latent. `uncond_embeddings` (steps, L, D) exist for
    null-text, `offsets` (steps, C, h, w) for direct inversion.
    """

    method: str
    prompt: str
    negative_prompt: str
    steps: int
    guidance: float
    model_hash: str
    width: int
    height: int
    timesteps: list[int]
    trajectory: torch.Tensor
    uncond_embeddings: torch.Tensor | None = None
    offsets: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def x_T(self) -> torch.Tensor:  # noqa: N802 - the paper's name
        return self.trajectory[:1]

    @property
    def clean_latent(self) -> torch.Tensor:
        return self.trajectory[-1:]

    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "method": self.method,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "steps": self.steps,
            "guidance": self.guidance,
            "model_hash": self.model_hash,
            "width": self.width,
            "height": self.height,
            "timesteps": list(self.timesteps),
            "extra": self.extra,
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"trajectory": self.trajectory}
        if self.uncond_embeddings is not None:
            out["uncond_embeddings"] = self.uncond_embeddings
        if self.offsets is not None:
            out["offsets"] = self.offsets
        return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in out.items()}

    def to_bytes(self) -> tuple[bytes, dict[str, Any]]:
        """(safetensors blob, JSON-able metadata with the blob's sha256), e.g. for a database row."""
        blob = save_tensors(self.tensors())
        return blob, {**self.metadata(), "sha256": hashlib.sha256(blob).hexdigest()}

    @classmethod
    def from_bytes(cls, blob: bytes, meta: dict[str, Any]) -> "InversionResult":
        expected = meta.get("sha256")
        if expected is not None and hashlib.sha256(blob).hexdigest() != expected:
            raise IntegrityError("inversion tensors do not match their recorded sha256")
        if meta.get("format") != FORMAT_VERSION or meta.get("method") not in METHODS:
            raise IntegrityError(f"unsupported inversion metadata (format {meta.get('format')}, method {meta.get('method')})")
        tensors = load_tensors(blob)
        if "trajectory" not in tensors:
            raise IntegrityError("inversion tensors have no trajectory")
        return cls(
            method=meta["method"], prompt=meta["prompt"], negative_prompt=meta.get("negative_prompt", ""),
            steps=int(meta["steps"]), guidance=float(meta["guidance"]), model_hash=meta["model_hash"],
            width=int(meta["width"]), height=int(meta["height"]), timesteps=[int(t) for t in meta["timesteps"]],
            trajectory=tensors["trajectory"], uncond_embeddings=tensors.get("uncond_embeddings"),
            offsets=tensors.get("offsets"), extra=dict(meta.get("extra", {})),
        )  # fmt: skip

    def save(self, folder: str | os.PathLike) -> Path:
        """Write inversion.safetensors + inversion.json into `folder` (each atomically)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        blob, meta = self.to_bytes()
        atomic_write(folder / TENSORS_FILE, blob)
        atomic_write(folder / META_FILE, json.dumps(meta, indent=2, ensure_ascii=False).encode())
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "InversionResult":
        folder = Path(folder)
        tensors, meta = folder / TENSORS_FILE, folder / META_FILE
        if not tensors.is_file() or not meta.is_file():
            raise NotFound(f"no inversion in {folder} (expected {TENSORS_FILE} and {META_FILE})")
        try:
            metadata = json.loads(meta.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise IntegrityError(f"{meta} is not valid JSON: {exc}") from exc
        return cls.from_bytes(tensors.read_bytes(), metadata)


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


def prepare_image(model: ModelBundle, image: ImageInput, width: int | None = None, height: int | None = None) -> torch.Tensor:
    """Image -> (1, 3, H, W) in [-1, 1], sides rounded down to the VAE factor."""
    processor = VaeImageProcessor(vae_scale_factor=model.vae_scale_factor)
    pixels = processor.preprocess(image, height=height, width=width).to(torch.float32)
    if pixels.shape[0] != 1:
        raise InvalidInput(f"expected one image, got {pixels.shape[0]}")
    if min(pixels.shape[-2:]) < model.vae_scale_factor:
        raise InvalidInput(f"image is too small ({pixels.shape[-1]}x{pixels.shape[-2]})")
    return pixels


@torch.no_grad()
def encode_mean(model: ModelBundle, pixels: torch.Tensor) -> torch.Tensor:
    """The VAE posterior's mean, scaled: inversion must be deterministic, so no posterior sample."""
    dist = model.vae.encode(pixels.to(model.device, model.vae.dtype)).latent_dist
    shift = getattr(model.vae.config, "shift_factor", None) or 0.0
    return ((dist.mode() - shift) * model.vae.config.scaling_factor).to(model.dtype)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1] (any matching shape)."""
    mse = F.mse_loss(a.float().cpu(), b.float().cpu()).item()
    return float("inf") if mse == 0 else 10.0 * float(np.log10(1.0 / mse))


class TrajectoryRecorder(Hook):
    """Keeps the latent after every step of a loop call."""

    def __init__(self) -> None:
        self.latents: list[torch.Tensor] = []

    def on_step_end(self, ctx: StepContext, latents: torch.Tensor) -> torch.Tensor:
        self.latents.append(latents.detach().clone())
        return latents


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
        cond: torch.Tensor,
        uncond: torch.Tensor,
        pivot: torch.Tensor,
        guidance: float,
        inner_steps: int = 10,
        epsilon: float = 1e-5,
    ) -> None:
        self.model, self.scheduler, self.cond, self.pivot = model, scheduler, cond, pivot
        self.current = uncond.detach().clone()
        self.guidance, self.inner_steps, self.epsilon = guidance, inner_steps, epsilon
        self.embeddings: list[torch.Tensor] = []
        self.losses: list[tuple[float, float]] = []  # (first, last) inner loss per step

    def uncond_embeddings(self, ctx: StepContext) -> torch.Tensor:
        i, t, z = ctx.index, ctx.timestep, ctx.latents
        unet, target = self.model.unet, self.pivot[i + 1 : i + 2].to(z)
        model_input = self.scheduler.scale_model_input(z, t)
        eps_cond = unet(model_input, t, encoder_hidden_states=self.cond, return_dict=False)[0]
        uncond = self.current.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([uncond], lr=1e-2 * (1.0 - i / 100.0))
        first = loss_value = float("nan")
        with torch.enable_grad():
            for _ in range(self.inner_steps):
                eps_uncond = unet(model_input, t, encoder_hidden_states=uncond, return_dict=False)[0]
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


class OffsetRecorder(Hook):
    """Direct inversion: after each guided step, record how far it landed from the inverted
    trajectory, then put the latent back on the trajectory (exactly what adding the offset does)."""

    def __init__(self, trajectory: torch.Tensor) -> None:
        self.trajectory = trajectory
        self.offsets: list[torch.Tensor] = []

    def on_step_end(self, ctx: StepContext, latents: torch.Tensor) -> torch.Tensor:
        target = self.trajectory[ctx.index + 1 : ctx.index + 2].to(latents)
        self.offsets.append((target - latents).detach().clone())
        return target


class FollowInversion(Hook):
    """Keeps row 0 of a loop call (the source branch) on the inversion.

    Null-text supplies its per-step unconditional embeddings (for every row, as in the paper);
    direct adds the recorded offset to row 0 after each step. With `shortcut`, work the source does
    not need is skipped: under direct inversion its latent after a step is by construction the
    trajectory's next latent and under negative-prompt inversion guidance cancels, so row 0 needs no
    unconditional pass; and whenever `needs_source(step)` says no controller reads the source's
    attention, row 0 is left out of the UNet batch and set from the trajectory.

    `offset_targets` (direct only) adds the same per-step offsets to the target rows too, the way
    edit-friendly DDPM inversion reuses the source's noise maps for the edit: the guidance drift the
    offsets cancel is shared by prompts that differ in a few words, so identical prompts give the
    source image back exactly and similar prompts stay on its trajectory. The paper's method
    (source only) is the default.
    """

    def __init__(
        self, inversion: InversionResult, needs_source: Any = None, shortcut: bool = False, offset_targets: bool = False
    ) -> None:
        self.inversion = inversion
        self.needs_source = needs_source
        self.shortcut = shortcut
        self.offset_targets = offset_targets and inversion.method == "direct"

    def uncond_embeddings(self, ctx: StepContext) -> torch.Tensor | None:
        if self.inversion.uncond_embeddings is None:
            return None
        return self.inversion.uncond_embeddings[ctx.index : ctx.index + 1]

    def unguided_rows(self, ctx: StepContext) -> Sequence[int]:
        return (0,) if self.shortcut and self.inversion.method in ("direct", "negative-prompt") else ()

    def skip_rows(self, ctx: StepContext) -> Sequence[int]:
        if not self.shortcut:
            return ()
        needed = self.needs_source is not None and self.needs_source(ctx.index)
        return () if needed else (0,)

    def on_step_end(self, ctx: StepContext, latents: torch.Tensor) -> torch.Tensor:
        layout, i = ctx.layout, ctx.index
        computed = layout is None or 0 in layout.cond_rows
        guided = layout is None or 0 in layout.uncond_rows
        if self.inversion.method == "direct" and computed and guided:
            latents = latents.clone()
            latents[0] = latents[0] + self.inversion.offsets[i].to(latents)
        elif not computed or self.inversion.method == "direct":
            latents = latents.clone()
            latents[0] = self.inversion.trajectory[i + 1].to(latents)
        if self.offset_targets:
            latents = latents.clone()
            latents[1:] = latents[1:] + self.inversion.offsets[i].to(latents)
        return latents


def check_model(model: ModelBundle, inversion: InversionResult) -> None:
    if model.model_hash != inversion.model_hash:
        raise StaleIdentity(
            f"inversion was made with model {inversion.model_hash[:10]} but the loaded model is {model.model_hash[:10]}; "
            "invert the image again with this model"
        )


def source_embeddings(model: ModelBundle, inversion: InversionResult) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond, uncond) of the source prompt as the inversion method wants them used."""
    cond = encode_prompts(model, [inversion.prompt])
    if inversion.method == "negative-prompt":
        return cond, cond
    return cond, encode_prompts(model, [inversion.negative_prompt])


def invert(
    model: ModelBundle,
    image: ImageInput,
    prompt: str,
    method: str = DEFAULT_METHOD,
    *,
    width: int | None = None,
    height: int | None = None,
    **options: Any,
) -> InversionResult:
    """Invert `image` described by `prompt`, for redraws and edits at `guidance` (see `invert_latent`)."""
    pixels = prepare_image(model, image, width, height)
    return invert_latent(model, encode_mean(model, pixels), prompt, method, **options)


def invert_latent(
    model: ModelBundle,
    clean: torch.Tensor,
    prompt: str,
    method: str = DEFAULT_METHOD,
    *,
    steps: int = 50,
    guidance: float = 7.5,
    negative_prompt: str = "",
    inner_steps: int = 10,
    early_stop: float = 1e-5,
    progress: bool = False,
) -> InversionResult:
    """Invert an image latent (1, C, h, w). `inner_steps`/`early_stop` tune null-text's optimisation."""
    if method not in METHODS:
        raise InvalidInput(f"unknown inversion method '{method}' (choose from {', '.join(METHODS)})")
    if not finite(guidance, "guidance") >= 1:
        raise InvalidInput(f"guidance must be >= 1, got {guidance}")
    clean = clean.to(model.device, model.dtype)
    forward, inverse = inversion_schedulers(model, steps)
    cond = encode_prompts(model, [prompt])

    recorder = TrajectoryRecorder()
    denoise(model, inverse, clean, cond, None, 1.0, [recorder], timesteps=inverse.timesteps, progress=progress)
    trajectory = torch.cat([clean, *recorder.latents]).flip(0)  # sampling order: x_T first

    factor = model.vae_scale_factor
    result = InversionResult(
        method=method, prompt=prompt, negative_prompt=negative_prompt, steps=steps, guidance=float(guidance),
        model_hash=model.model_hash, width=clean.shape[-1] * factor, height=clean.shape[-2] * factor,
        timesteps=[int(t) for t in forward.timesteps], trajectory=trajectory,
    )  # fmt: skip
    if method == "null-text":
        uncond = encode_prompts(model, [negative_prompt])
        optimizer = NullTextOptimizer(model, _fresh(forward, steps), cond, uncond, trajectory, guidance, inner_steps, early_stop)
        denoise(model, forward, trajectory[:1], cond, uncond, guidance, [optimizer], progress=progress)
        result.uncond_embeddings = torch.cat(optimizer.embeddings)
        result.extra["losses"] = optimizer.losses
    elif method == "direct":
        uncond = encode_prompts(model, [negative_prompt])
        offsets = OffsetRecorder(trajectory)
        denoise(model, forward, trajectory[:1], cond, uncond, guidance, [offsets], progress=progress)
        result.offsets = torch.cat(offsets.offsets)
    log.info("inverted %dx%d image with %s in %d steps", result.width, result.height, method, steps)
    return result


def _fresh(scheduler: DDIMScheduler, steps: int) -> DDIMScheduler:
    """A separate DDIM instance for inner optimisation steps, so the loop's scheduler is untouched."""
    copy = DDIMScheduler.from_config(scheduler.config)
    copy.set_timesteps(steps, device=scheduler.timesteps.device)
    return copy


def reconstruct_latents(model: ModelBundle, inversion: InversionResult, progress: bool = False) -> torch.Tensor:
    """Redraw the inverted latent at the inversion's guidance, computing the source branch in full."""
    check_model(model, inversion)
    forward, _ = inversion_schedulers(model, inversion.steps)
    cond, uncond = source_embeddings(model, inversion)
    return denoise(
        model, forward, inversion.x_T.to(model.device, model.dtype), cond, uncond, inversion.guidance,
        [FollowInversion(inversion)], progress=progress,
    )  # fmt: skip


def reconstruct(model: ModelBundle, inversion: InversionResult, progress: bool = False) -> torch.Tensor:
    """The redrawn image, pixels in [0, 1] (1, 3, H, W)."""
    latents = reconstruct_latents(model, inversion, progress)
    with torch.no_grad():
        return (decode_latents(model, latents) / 2 + 0.5).clamp(0, 1)
