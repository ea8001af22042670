"""Two-phase latent-diffusion training on a wall-clock budget: the VAE first, then UNet + text encoder.

The budget is the whole command's (`Budget`): data rendering before the trainer, latent encoding,
checkpoints and the export all come out of it, and every phase saves a checkpoint when it ends, every
`checkpoint_minutes`, and when interrupted (Ctrl-C), so `--resume` loses at most the step in flight
(or a latent encoding in progress, which starts over).

The VAE is trained alone because the UNet needs a fixed latent space; afterwards every training
image is encoded once (mean and std of its posterior are cached) so the second phase never touches
pixels. Caption dropout teaches the unconditional branch classifier-free guidance needs, and the
exported UNet and text encoder are exponential moving averages, which sample far cleaner than the
raw weights after a short run.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import CLIPTextConfig, CLIPTextModel

from charforge.errors import InvalidInput, NotFound
from charforge.recipes.training.budget import Budget
from charforge.recipes.training.checkpoint import load_checkpoint, load_optimizer, optimizer_tensors, save_checkpoint
from charforge.recipes.training.config import ModelSpec, TrainConfig
from charforge.recipes.training.data import SampleSource, batch, captions

log = logging.getLogger(__name__)

_PHASES = ("vae", "unet", "decoder", "done")


def _weight_map(name: str, rows: list[list[float]] | None, shape: tuple[int, ...]) -> torch.Tensor | None:
    """A configured per-position loss weight, checked against the maps it weighs and scaled to mean 1
    (so weighting moves where the loss looks, not its size)."""
    if rows is None:
        return None
    weight = torch.tensor(rows, dtype=torch.float32)
    if tuple(weight.shape) != shape or (weight < 0).any():
        raise InvalidInput(f"{name} must be a non-negative {shape} map, got shape {tuple(weight.shape)}")
    return weight / weight.mean()


def _cosine(base: float, fraction: float, step: int, warmup: int = 100) -> float:
    """Cosine decay over the phase's time budget to 5% of base, after a short linear warm-up."""
    f = min(max(fraction, 0.0), 1.0)
    return base * min(1.0, (step + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * f)))


class LatentDiffusionTrainer:
    """Train an SD-architecture model on `source` into `run_dir`; `export()` writes the diffusers folder."""

    def __init__(self, spec: ModelSpec, source: SampleSource, config: TrainConfig, run_dir: str | Path) -> None:
        if len(source) == 0:
            raise InvalidInput("the sample source is empty")
        self.spec, self.source, self.cfg = spec, source, config
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoint"
        torch.manual_seed(config.seed)
        self.vae = AutoencoderKL(**spec.vae_config)
        self.unet = UNet2DConditionModel(**spec.unet_config)
        self.text_encoder = CLIPTextModel(CLIPTextConfig(**spec.text_config))
        self.scheduler = DDIMScheduler(**spec.scheduler_config)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.phase = "vae"
        self.step = 0
        self.elapsed = 0.0  # seconds spent in the current phase (survives resumes)
        self.history: list[dict[str, Any]] = []
        self.finished: dict[str, dict[str, float]] = {}  # phase -> {"step", "elapsed"} when it ended
        self.vae_opt = torch.optim.AdamW(self.vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
        # the decoder phase sharpens pictures without moving the latent space the UNet has learnt
        self.decoder_opt = torch.optim.AdamW(self._decoder_parameters(), lr=config.decoder_lr, weight_decay=0.0)
        self.unet_opt = torch.optim.AdamW(
            [
                {"params": list(self.unet.parameters()), "lr": config.unet_lr},
                {"params": list(self.text_encoder.parameters()), "lr": config.text_lr},
            ],
            weight_decay=1e-2,
        )
        self.ema_unet = EMAModel(self.unet.parameters(), decay=config.ema_decay, use_ema_warmup=True, power=3 / 4)
        self.ema_text = EMAModel(
            self.text_encoder.parameters(), decay=config.ema_decay, use_ema_warmup=True, power=3 / 4
        )
        self._latents: tuple[torch.Tensor, torch.Tensor] | None = None
        self._ids: torch.Tensor | None = None
        self.budget: Budget | None = None  # the command's deadline, set by `run`
        self._save_seconds = 0.0  # how long the last checkpoint took
        self._export_seconds = 0.0  # how long an export takes (timed once per `run`)
        self._encode_seconds = 0.0  # estimated time to encode the dataset, while it is still to do

    def _decoder_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.vae.decoder.parameters()) + list(self.vae.post_quant_conv.parameters())

    # --- budgets ----------------------------------------------------------------------------------

    def _budget(self, phase: str) -> float:
        """A phase's configured share of the run's `minutes` (the decoder's comes out of the UNet's)."""
        total = self.cfg.minutes * 60.0
        if phase == "vae":
            return total * self.cfg.vae_fraction
        if phase == "decoder":
            return self.cfg.decoder_minutes * 60.0
        return max(0.0, total * (1 - self.cfg.vae_fraction) - self.cfg.decoder_minutes * 60.0)

    def _allowance(self, phase: str) -> float:
        """Seconds `phase` may still train in this command: its configured remainder, shrunk in proportion
        with the phases after it when the deadline leaves less once the fixed work is set aside (a save
        at each phase end, the export, the latent encoding still to do)."""
        ahead = _PHASES[_PHASES.index(phase) : -1]
        wanted = {p: max(0.0, self._budget(p) - (self.elapsed if p == phase else 0.0)) for p in ahead}
        fixed = len(ahead) * self._save_seconds + self._export_seconds + self._encode_seconds
        if self.budget is None:
            return wanted[phase]
        available = max(0.0, self.budget.remaining() - fixed)
        total = sum(wanted.values())
        return min(wanted[phase], available * wanted[phase] / total) if total > 0 else 0.0

    # --- checkpoints ------------------------------------------------------------------------------

    def save(self) -> None:
        started = time.monotonic()
        vae_opt, vae_opt_meta = optimizer_tensors(self.vae_opt)
        unet_opt, unet_opt_meta = optimizer_tensors(self.unet_opt)
        decoder_opt, decoder_opt_meta = optimizer_tensors(self.decoder_opt)
        tensors = {
            "vae": self.vae.state_dict(),
            "unet": self.unet.state_dict(),
            "text_encoder": self.text_encoder.state_dict(),
            "ema_unet": {str(i): p for i, p in enumerate(self.ema_unet.shadow_params)},
            "ema_text": {str(i): p for i, p in enumerate(self.ema_text.shadow_params)},
            "vae_opt": vae_opt,
            "unet_opt": unet_opt,
            "decoder_opt": decoder_opt,
            "rng": {"gen": self.gen.get_state()},
        }
        meta = {
            "phase": self.phase,
            "step": self.step,
            "elapsed": self.elapsed,
            "ema_unet_steps": self.ema_unet.optimization_step,
            "ema_text_steps": self.ema_text.optimization_step,
            "scaling_factor": self.vae.config.scaling_factor,
            "vae_opt": vae_opt_meta,
            "unet_opt": unet_opt_meta,
            "decoder_opt": decoder_opt_meta,
            "config": self.cfg.to_dict(),
            "history": self.history[-2000:],
            "finished": self.finished,
        }
        save_checkpoint(self.ckpt_dir, tensors, meta)
        self.spec.tokenizer.save_pretrained(str(self.run_dir / "tokenizer"))
        (self.run_dir / "spec.json").write_text(
            json.dumps(
                {
                    "vae_config": self.spec.vae_config,
                    "unet_config": self.spec.unet_config,
                    "text_config": self.spec.text_config,
                    "scheduler_config": self.spec.scheduler_config,
                },
                indent=2,
                default=list,
            ),
            encoding="utf-8",
        )
        self._save_seconds = time.monotonic() - started
        log.info("checkpoint saved: phase=%s step=%d (%.1fs)", self.phase, self.step, self._save_seconds)

    def resume(self) -> bool:
        """Load the last checkpoint of `run_dir` if there is one; False when starting fresh."""
        try:
            tensors, meta = load_checkpoint(self.ckpt_dir)
        except NotFound:
            return False
        self.vae.load_state_dict(tensors["vae"])
        self.vae.register_to_config(scaling_factor=meta["scaling_factor"])
        self.unet.load_state_dict(tensors["unet"])
        self.text_encoder.load_state_dict(tensors["text_encoder"])
        for ema, key, steps in (
            (self.ema_unet, "ema_unet", "ema_unet_steps"),
            (self.ema_text, "ema_text", "ema_text_steps"),
        ):
            ema.shadow_params = [tensors[key][str(i)] for i in range(len(ema.shadow_params))]
            ema.optimization_step = meta[steps]
        load_optimizer(self.vae_opt, tensors["vae_opt"], meta["vae_opt"])
        load_optimizer(self.unet_opt, tensors["unet_opt"], meta["unet_opt"])
        if "decoder_opt" in tensors:
            load_optimizer(self.decoder_opt, tensors["decoder_opt"], meta["decoder_opt"])
        self.gen.set_state(tensors["rng"]["gen"])
        self.phase, self.step, self.elapsed = meta["phase"], meta["step"], meta["elapsed"]
        self.history = meta.get("history", [])
        self.finished = meta.get("finished") or self._finished_from_history()
        log.info("resumed at phase=%s step=%d (%.0fs into the phase)", self.phase, self.step, self.elapsed)
        return True

    # --- phases -----------------------------------------------------------------------------------

    def _finished_from_history(self) -> dict[str, dict[str, float]]:
        """For checkpoints written before `finished` was recorded: the last logged point of each past phase."""
        done: dict[str, dict[str, float]] = {}
        for entry in self.history:
            if _PHASES.index(entry["phase"]) < _PHASES.index(self.phase):
                done[entry["phase"]] = {"step": entry["step"], "elapsed": entry["elapsed"]}
        return done

    def _end_phase(self, phase: str, following: str) -> None:
        self.finished[phase] = {"step": self.step, "elapsed": self.elapsed}
        self.phase, self.step, self.elapsed = following, 0, 0.0
        self.save()

    def _reopen_unet(self) -> None:
        """A finished run resumed with a larger budget goes back to its UNet phase (a warm restart)."""
        past = self.finished.get("unet")
        if self.phase not in ("decoder", "done") or past is None:
            return
        cap = self.cfg.max_steps
        if past["elapsed"] + 1.0 < self._budget("unet") and (cap is None or past["step"] < cap):
            log.info("budget grew: reopening the UNet phase at step %d", past["step"])
            self.phase, self.step, self.elapsed = "unet", int(past["step"]), float(past["elapsed"])

    def run(self, budget: Budget | None = None) -> None:
        """Train the phases still to do, within `budget` (default: `minutes` from now); then `export()`.

        The `budget` of a command starts when the command does, so whatever ran before (rendering data)
        is already spent. Ctrl-C saves a checkpoint before it stops the run.
        """
        self.budget = budget or Budget.minutes(self.cfg.minutes)
        torch.set_num_threads(self.cfg.threads)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._reopen_unet()
        self.save()  # the starting point (and how long a save takes, which the phases set aside)
        self._export_seconds = self._time_export()
        try:
            if self.phase == "vae":
                self._train_vae()
                self._end_phase("vae", "unet")
            if self.phase == "unet":
                self._train_unet()
                self._end_phase("unet", "decoder")
            if self.phase == "decoder":
                if self._budget("decoder") > 0:
                    self._train_decoder()
                self._end_phase("decoder", "done")
        except KeyboardInterrupt:
            log.warning(
                "interrupted: saving a checkpoint of phase %s step %d (continue with --resume)", self.phase, self.step
            )
            self.save()
            raise
        log.info("training took %.1f of %.1f budgeted seconds", self.budget.spent(), self.budget.seconds)

    def _loop(self, phase: str, train_step) -> None:
        seconds = self._allowance(phase)
        if seconds <= 0:
            log.warning("the budget leaves no time for the %s phase", phase)
        start, begun = self.elapsed, time.monotonic()
        length = start + seconds  # the phase's length as this command runs it (the cosine spans it)
        last_ckpt = time.monotonic()
        bar = tqdm(
            total=round(length),
            initial=min(round(start), round(length)),
            unit="s",
            desc=f"train {phase}",
            mininterval=5.0,
        )
        cap = self.cfg.max_steps
        last = 0.0  # the last step's time: a step that would end past the phase's length is not begun
        while self.elapsed + last < length and (cap is None or self.step < cap):
            before = self.elapsed
            loss = train_step(self.elapsed / length)
            self.elapsed = start + time.monotonic() - begun  # wall time, checkpoints included
            last = self.elapsed - before
            self.step += 1
            bar.n = min(int(self.elapsed), bar.total)
            bar.set_postfix(step=self.step, loss=f"{loss:.4f}")
            if self.step % 50 == 0:
                self.history.append(
                    {"phase": phase, "step": self.step, "elapsed": round(self.elapsed, 1), "loss": round(loss, 5)}
                )
                log.info("%s step %d loss %.5f (%.0fs)", phase, self.step, loss, self.elapsed)
            if time.monotonic() - last_ckpt > self.cfg.checkpoint_minutes * 60:
                self.save()
                last_ckpt = time.monotonic()
        bar.close()

    def _train_vae(self) -> None:
        stale = self.run_dir / "latents.safetensors"
        if stale.exists():  # encoded by a VAE state newer than this checkpoint's
            stale.unlink()
        self._encode_seconds = self._time_encoding()
        self.vae.train()

        def step(fraction: float) -> float:
            for group in self.vae_opt.param_groups:
                group["lr"] = _cosine(self.cfg.vae_lr, fraction, self.step)
            idx = torch.randint(len(self.source), (self.cfg.vae_batch,), generator=self.gen)
            x, _ = batch(self.source, idx)
            x = self._crop(x)
            posterior = self.vae.encode(x).latent_dist
            recon = self.vae.decode(posterior.sample(generator=self.gen)).sample
            loss = F.mse_loss(recon, x) + self.cfg.kl_weight * posterior.kl().mean()
            self.vae_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.vae_opt.step()
            return float(loss.detach())

        self._loop("vae", step)
        self._encode_dataset()
        self._encode_seconds = 0.0

    def _time_export(self) -> float:
        """Seconds `export()` takes (the phases leave that much of the budget for it), by exporting once."""
        import shutil

        started = time.monotonic()
        probe = self.export(self.run_dir / "export-probe")
        shutil.rmtree(probe, ignore_errors=True)
        return time.monotonic() - started

    @torch.no_grad()
    def _time_encoding(self, chunk: int = 64) -> float:
        """Seconds encoding the whole dataset will take, from one chunk (it is set aside from the VAE's time)."""
        self.vae.eval()
        n = min(chunk, len(self.source))
        started = time.monotonic()
        x, _ = batch(self.source, torch.arange(n))
        self.vae.encode(x)
        return (time.monotonic() - started) * len(self.source) / n

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        size = self.cfg.vae_crop
        if not size or size >= min(x.shape[-2:]):
            return x
        top, left = (int(torch.randint(0, d - size + 1, (1,), generator=self.gen)) for d in x.shape[-2:])
        return x[..., top : top + size, left : left + size]

    @torch.no_grad()
    def _encode_dataset(self) -> None:
        """Cache every image's posterior (mean, std) and set the VAE's scaling factor to unit latent std."""
        path = self.run_dir / "latents.safetensors"
        if path.is_file():
            cached = load_file(str(path))
            self._latents = (cached["mean"], cached["std"])
            self.vae.register_to_config(scaling_factor=float(cached["scaling_factor"]))
            return
        self.vae.eval()
        means, stds = [], []
        n, chunk = len(self.source), 64
        for start in tqdm(range(0, n, chunk), desc="encode latents", mininterval=5.0):
            x, _ = batch(self.source, torch.arange(start, min(n, start + chunk)))
            dist = self.vae.encode(x).latent_dist
            means.append(dist.mean.half())
            stds.append(dist.std.half())
        mean, std = torch.cat(means), torch.cat(stds)
        scaling = float(1.0 / mean.float().std())
        self.vae.register_to_config(scaling_factor=scaling)
        save_file(
            {"mean": mean.contiguous(), "std": std.contiguous(), "scaling_factor": torch.tensor(scaling)}, str(path)
        )
        self._latents = (mean, std)
        log.info("encoded %d images; scaling factor %.4f", n, scaling)

    def _caption_ids(self) -> torch.Tensor:
        texts = captions(self.source) + [""]
        tok = self.spec.tokenizer
        return tok(
            texts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids

    def _train_unet(self) -> None:
        if self._latents is None:
            self._encode_dataset()
        ids = self._caption_ids()
        empty, ids = ids[-1], ids[:-1]
        mean, std = self._latents
        sf = self.vae.config.scaling_factor
        self.unet.train()
        self.text_encoder.train()
        self.vae.requires_grad_(False)
        n_train = self.scheduler.config.num_train_timesteps
        weight = _weight_map("loss_weight", self.cfg.loss_weight, tuple(mean.shape[-2:]))

        def step(fraction: float) -> float:
            self.unet_opt.param_groups[0]["lr"] = _cosine(self.cfg.unet_lr, fraction, self.step)
            self.unet_opt.param_groups[1]["lr"] = _cosine(self.cfg.text_lr, fraction, self.step)
            b = self.cfg.unet_batch
            idx = torch.randint(len(mean), (b,), generator=self.gen)
            z = (mean[idx].float() + std[idx].float() * torch.randn(mean[idx].shape, generator=self.gen)) * sf
            noise = torch.randn(z.shape, generator=self.gen)
            t = torch.randint(0, n_train, (b,), generator=self.gen)
            noisy = self.scheduler.add_noise(z, noise, t)
            drop = torch.rand(b, generator=self.gen) < self.cfg.caption_dropout
            tokens = torch.where(drop[:, None], empty[None], ids[idx])
            hidden = self.text_encoder(tokens)[0]
            pred = self.unet(noisy, t, hidden).sample
            if weight is None:
                loss = F.mse_loss(pred, noise)
            else:
                loss = ((pred - noise) ** 2 * weight).mean()
            self.unet_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(self.unet.parameters()) + list(self.text_encoder.parameters()), 1.0)
            self.unet_opt.step()
            self.ema_unet.step(self.unet.parameters())
            self.ema_text.step(self.text_encoder.parameters())
            return float(loss.detach())

        self._loop("unet", step)

    def _train_decoder(self) -> None:
        """Fine-tune only the decoder on cached posteriors: the encoder, hence the latent space, stays fixed."""
        if self._latents is None:
            self._encode_dataset()
        mean, std = self._latents
        self.vae.train()
        self.vae.requires_grad_(False)
        params = self._decoder_parameters()
        for p in params:
            p.requires_grad_(True)
        size = tuple(self.source[0][0].shape[-2:])
        weight = _weight_map("decoder_weight", self.cfg.decoder_weight, size)
        cells, outside = self._locality_cells(tuple(mean.shape[-2:]), size)

        def step(fraction: float) -> float:
            for group in self.decoder_opt.param_groups:
                group["lr"] = _cosine(self.cfg.decoder_lr, fraction, self.step, warmup=20)
            idx = torch.randint(len(mean), (self.cfg.decoder_batch,), generator=self.gen)
            x, _ = batch(self.source, idx)
            z = mean[idx].float() + std[idx].float() * torch.randn(mean[idx].shape, generator=self.gen)
            if cells is None:
                picture = self.vae.decode(z).sample
            else:
                other = mean[torch.randint(len(mean), (len(idx),), generator=self.gen)].float()
                picture, swapped = self.vae.decode(torch.cat([z, torch.where(cells, other, z)])).sample.chunk(2)
            loss = F.mse_loss(picture, x) if weight is None else ((picture - x) ** 2 * weight).mean()
            if cells is not None:
                loss = loss + self.cfg.decoder_locality * ((swapped - picture.detach()) ** 2)[..., outside].mean()
            self.decoder_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.decoder_opt.step()
            return float(loss.detach())

        self._loop("decoder", step)
        self.vae.requires_grad_(False)
        self.vae.eval()

    def _locality_cells(
        self, latent: tuple[int, ...], size: tuple[int, ...]
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
        """The locality term's swapped latent cells and the pixels outside them (None: no such term)."""
        if not self.cfg.decoder_locality:
            return None, None
        if self.cfg.locality_cells is None:
            raise InvalidInput("decoder_locality needs locality_cells, the latent cells an edit may change")
        cells = torch.tensor(self.cfg.locality_cells, dtype=torch.float32)
        if tuple(cells.shape) != latent or not 0 < int((cells > 0).sum()) < cells.numel():
            raise InvalidInput(f"locality_cells must be a {latent} map with some cells set and some not")
        outside = F.interpolate(cells[None, None], size=size, mode="nearest")[0, 0] == 0
        return cells[None, None] > 0, outside

    # --- export -----------------------------------------------------------------------------------

    def pipeline(self, use_ema: bool = True) -> StableDiffusionPipeline:
        """A StableDiffusionPipeline of copies of the current weights (EMA by default)."""
        unet, text = copy.deepcopy(self.unet).eval(), copy.deepcopy(self.text_encoder).eval()
        if use_ema:
            self.ema_unet.copy_to(unet.parameters())
            self.ema_text.copy_to(text.parameters())
        return StableDiffusionPipeline(
            vae=copy.deepcopy(self.vae).eval(),
            text_encoder=text,
            tokenizer=self.spec.tokenizer,
            unet=unet,
            scheduler=DDIMScheduler(**self.spec.scheduler_config),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )

    def export(self, folder: str | Path, use_ema: bool = True) -> Path:
        """Write a diffusers folder that `StableDiffusionPipeline.from_pretrained(folder)` loads offline."""
        folder = Path(folder)
        self.pipeline(use_ema).save_pretrained(str(folder), safe_serialization=True)
        log.info("exported %s", folder)
        return folder
