"""A tiny autoencoder (diffusers' `AutoencoderTiny`, TAESD's design) distilled from portrait-mini's VAE.

Why: once the few-step student takes 4 UNet calls, decoding the picture with the full KL decoder is
a sixth of its time. The tiny decoder is trained to reproduce the KL decoder's picture from the same
latent, so it replaces it where speed matters and nothing upstream changes. It works in the UNet's
(scaled) latent space with `scaling_factor` 1, as TAESD does, so every diffusers pipeline and
charforge's engine use it unchanged. The encoder is distilled too (to the KL posterior mean), so the
folder is a complete VAE for img2img.

Training: renders of training identities, encoded once by the KL VAE (posterior mean and std); each
step draws a posterior sample, decodes it with the KL decoder (the target) and with the tiny decoder,
MSE (optionally weighted towards the face ellipse, as the teacher's losses are: an expression is a few
pixels); the encoder learns the scaled posterior mean. Resumable safetensors checkpoints.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from charforge.recipes.portrait_mini.dataset import PortraitSource
from charforge.recipes.portrait_mini.recipe import face_loss_weight
from charforge.recipes.training.budget import Budget
from charforge.recipes.training.checkpoint import load_checkpoint, load_optimizer, optimizer_tensors, save_checkpoint

log = logging.getLogger(__name__)

DATA_SEED = 4321
DATA_SIZE = 4096
# 32 channels; most decoder blocks at 16x16 and none at 64x64, where a block costs the most
TINY_CONFIG = {
    "encoder_block_out_channels": [32, 32, 32],
    "decoder_block_out_channels": [32, 32, 32],
    "num_encoder_blocks": [1, 1, 1],
    "num_decoder_blocks": [3, 2, 0],
    "latent_channels": 4,
    "scaling_factor": 1.0,
}
BATCH = 16
LR = 1e-3
CHECKPOINT_SECONDS = 240.0


class TinyVaeDistiller:
    """`source` (default: the renderer's training identities) yields (image in [-1, 1], caption) pairs;
    `config` is the `AutoencoderTiny`'s, with as many levels as the teacher has."""

    def __init__(
        self,
        teacher_vae: str | Path,
        run_dir: str | Path,
        seed: int = 0,
        source: Any = None,
        config: dict[str, Any] | None = None,
        batch: int = BATCH,
        face_weight: float = 1.0,
    ) -> None:
        from diffusers import AutoencoderKL, AutoencoderTiny

        self.run_dir, self.source, self.batch, self.face_weight = Path(run_dir), source, batch, face_weight
        self.teacher = AutoencoderKL.from_pretrained(str(teacher_vae)).eval().requires_grad_(False)
        torch.manual_seed(seed)
        self.tiny = AutoencoderTiny(**(config or TINY_CONFIG))
        self.opt = torch.optim.AdamW(self.tiny.parameters(), lr=LR, weight_decay=0.0)
        self.gen = torch.Generator().manual_seed(seed)
        self.step, self.elapsed = 0, 0.0

    @torch.no_grad()
    def prepare(self) -> None:
        path = self.run_dir / "data.safetensors"
        if path.is_file():
            data = load_file(str(path))
        else:
            source = self.source if self.source is not None else PortraitSource(DATA_SEED, DATA_SIZE)
            images, means, stds = [], [], []
            for start in range(0, len(source), 64):
                batch = torch.stack([source[k][0] for k in range(start, min(len(source), start + 64))])
                dist = self.teacher.encode(batch).latent_dist
                images.append(batch.half())
                means.append(dist.mean)
                stds.append(dist.std)
            data = {k: torch.cat(v).contiguous() for k, v in (("images", images), ("mean", means), ("std", stds))}
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_file(data, str(path))
        self.images, self.mean, self.std = data["images"].float(), data["mean"], data["std"]
        weight = torch.tensor(face_loss_weight(self.images.shape[-1], self.face_weight))
        self.weight = weight / weight.mean()
        self.scale = float(self.teacher.config.scaling_factor)

    def train_step(self, lr: float) -> float:
        for group in self.opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(self.mean), (self.batch,), generator=self.gen)
        eps = torch.randn(self.mean[idx].shape, generator=self.gen)
        latent = self.mean[idx] + self.std[idx] * eps
        with torch.no_grad():
            target = self.teacher.decode(latent).sample
        picture = self.tiny.decode(latent * self.scale).sample
        encoded = self.tiny.encode(self.images[idx]).latents
        loss = ((picture - target) ** 2 * self.weight).mean() + F.mse_loss(encoded, self.mean[idx] * self.scale)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.tiny.parameters(), 1.0)
        self.opt.step()
        self.step += 1
        return loss.item()

    @torch.no_grad()
    def decoder_error(self, count: int = 64) -> float:
        """Mean squared difference from the KL decoder's pictures of the first `count` latent means."""
        latent = self.mean[:count]
        return F.mse_loss(self.tiny.decode(latent * self.scale).sample, self.teacher.decode(latent).sample).item()

    def run(self, budget: Budget, max_steps: int | None = None) -> None:
        self.prepare()
        total = self.elapsed + budget.remaining() - 30.0  # keep time for the export
        last_save, started = time.monotonic(), time.monotonic() - self.elapsed
        while budget.remaining() > 30.0 and (max_steps is None or self.step < max_steps):
            done = min(1.0, (time.monotonic() - started) / max(total, 1.0))
            lr = LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))
            loss = self.train_step(lr)
            if self.step % 100 == 0:
                log.info("tiny vae step %d loss %.5f lr %.2e", self.step, loss, lr)
            if time.monotonic() - last_save > CHECKPOINT_SECONDS:
                self.elapsed = time.monotonic() - started
                self.save()
                last_save = time.monotonic()
        self.elapsed = time.monotonic() - started
        self.save()

    def save(self) -> None:
        tensors, meta = optimizer_tensors(self.opt)
        save_checkpoint(
            self.run_dir / "checkpoint",
            {"tiny": self.tiny.state_dict(), "optimizer": tensors, "rng": {"gen": self.gen.get_state()}},
            {"optimizer": meta, "step": self.step, "elapsed": self.elapsed},
        )

    def resume(self) -> bool:
        if not (self.run_dir / "checkpoint" / "state.json").is_file():
            return False
        tensors, meta = load_checkpoint(self.run_dir / "checkpoint")
        self.tiny.load_state_dict(tensors["tiny"])
        load_optimizer(self.opt, tensors["optimizer"], meta["optimizer"])
        self.gen.set_state(tensors["rng"]["gen"])
        self.step, self.elapsed = meta["step"], meta["elapsed"]
        return True

    def export(self, folder: str | Path) -> Path:
        folder = Path(folder)
        self.tiny.save_pretrained(str(folder), safe_serialization=True)
        return folder


def distill_tiny_vae(
    teacher_vae: str | Path, out: str | Path, minutes: float, threads: int = 1, face_weight: float = 1.0
) -> Path:
    """Distil (or, resumed, go on distilling: also from a new decoder of the same latent space) into `out`."""
    budget = Budget.minutes(minutes)
    torch.set_num_threads(threads)
    distiller = TinyVaeDistiller(teacher_vae, out, face_weight=face_weight)
    if distiller.resume():
        log.info("resumed at step %d", distiller.step)
    distiller.run(budget)
    return distiller.export(Path(out) / "vae")
