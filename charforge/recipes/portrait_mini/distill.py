"""portrait-mini-fast: latent consistency distillation (LCD) of the shipped portrait model into a
few-step student that takes the guidance scale as an input.

Why LCD rather than guided progressive distillation (seed 000, unit 4): progressive distillation
needs one converged stage per halving (32 -> 16 -> 8 -> 4 is four to five sequential runs, plus the
guided stage), and every stage's error compounds into the next; on two shared CPU cores with an hour
or so of training that budget splits into 12-minute stages. LCD reaches 4 steps in one run: the
student learns to map any point of the teacher's guided probability-flow ODE to its end, the
target being the student's own EMA evaluated one DDIM step (of 50) further along the teacher's
guided trajectory. Guidance is folded in exactly as in guided distillation: the teacher step uses
classifier-free guidance at scale 1 + w, and the student sees w through diffusers'
`time_cond_proj_dim` input (the sinusoidal embedding of w * 1000 that `LatentConsistencyModelPipeline`
and charforge's loop build), so sampling costs one UNet call per step.

The student is `UNet2DConditionModel` from the teacher's config plus `time_cond_proj_dim`,
initialised from the teacher's weights with the new projection at zero (it starts as the teacher).
The run is resumable (safetensors checkpoint), bounded by a wall-clock `Budget`, and exports a
`LatentConsistencyModelPipeline` folder with diffusers' `LCMScheduler` (the teacher's noise schedule,
`original_inference_steps` = the solver's 50 steps). Data: training renders encoded once by the
teacher's VAE (cached beside the checkpoint); the teacher's text encoder is frozen.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, LCMScheduler, UNet2DConditionModel
from diffusers.models.embeddings import get_timestep_embedding
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTokenizer

from charforge.errors import InvalidInput, NotFound
from charforge.models import default_model_path, write_vocabulary
from charforge.recipes.portrait_mini.dataset import PortraitSource
from charforge.recipes.portrait_mini.tokenizer import caption_words
from charforge.recipes.training.budget import Budget
from charforge.recipes.training.checkpoint import load_checkpoint, load_optimizer, optimizer_tensors, save_checkpoint
from charforge.recipes.training.data import batch

log = logging.getLogger(__name__)

DATA_SEED = 1234  # the teacher's training identities (held-out ones stay held out)


@dataclass
class DistillConfig:
    """LCD settings (diffusers' train_lcm_distill_sd script's defaults where they fit a 4.7M-param UNet)."""

    seed: int = 0
    minutes: float = 90.0
    dataset_size: int = 4096
    batch: int = 16
    lr: float = 2e-4
    ddim_steps: int = 50  # the solver's grid: one teacher DDIM step of 1000/50 timesteps per target
    w_min: float = 2.0  # guidance scale - 1, drawn uniformly per row (scales 3..7 around the teacher's 5)
    w_max: float = 6.0
    cond_dim: int = 256  # time_cond_proj_dim: width of the guidance embedding
    target_decay: float = 0.95  # EMA of the student that provides the consistency target
    huber_c: float = 0.001
    checkpoint_minutes: float = 4.0
    max_steps: int | None = None
    threads: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def guidance_condition(w: torch.Tensor, dim: int) -> torch.Tensor:
    """(B, dim) embedding of w = guidance scale - 1, built as the LCM pipelines (and charforge's loop) build it."""
    return get_timestep_embedding(w * 1000.0, dim, flip_sin_to_cos=False, downscale_freq_shift=1)


def boundary_scalings(scheduler: LCMScheduler, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """c_skip, c_out of consistency models at timesteps t, exactly as `LCMScheduler.step` applies them."""
    pairs = [scheduler.get_scalings_for_boundary_condition_discrete(int(x)) for x in t]
    c_skip = torch.tensor([float(a) for a, _ in pairs]).view(-1, 1, 1, 1)
    c_out = torch.tensor([float(b) for _, b in pairs]).view(-1, 1, 1, 1)
    return c_skip, c_out


def student_from_teacher(teacher: UNet2DConditionModel, cond_dim: int) -> UNet2DConditionModel:
    """The teacher's UNet plus a zero-initialised guidance projection: at step 0 it computes the teacher."""
    config = {k: v for k, v in dict(teacher.config).items() if not k.startswith("_")}
    student = UNet2DConditionModel(**{**config, "time_cond_proj_dim": cond_dim})
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or any(not m.startswith("time_embedding.cond_proj") for m in missing):
        raise InvalidInput(f"student and teacher UNets differ beyond the guidance projection: {missing[:3]}")
    torch.nn.init.zeros_(student.time_embedding.cond_proj.weight)
    return student


class ConsistencyDistiller:
    """One LCD run in `run_dir` from the teacher folder `teacher`: `run(budget)`, `export(folder)`."""

    def __init__(self, teacher: str | Path, run_dir: str | Path, cfg: DistillConfig, source: Any = None) -> None:
        self.teacher_dir, self.run_dir, self.cfg = Path(teacher), Path(run_dir), cfg
        self.ckpt_dir = self.run_dir / "checkpoint"
        self.source = source
        torch.manual_seed(cfg.seed)
        t = self.teacher_dir
        self.teacher = UNet2DConditionModel.from_pretrained(str(t / "unet")).eval().requires_grad_(False)
        self.vae = AutoencoderKL.from_pretrained(str(t / "vae")).eval().requires_grad_(False)
        self.text_encoder = CLIPTextModel.from_pretrained(str(t / "text_encoder")).eval().requires_grad_(False)
        self.tokenizer = CLIPTokenizer.from_pretrained(str(t / "tokenizer"))
        self.ddim = DDIMScheduler.from_pretrained(str(t / "scheduler"))
        self.lcm = LCMScheduler.from_config(self.ddim.config, original_inference_steps=cfg.ddim_steps)
        self.student = student_from_teacher(self.teacher, cfg.cond_dim).train()
        self.target = copy.deepcopy(self.student).eval().requires_grad_(False)
        self.opt = torch.optim.AdamW(self.student.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        ratio = self.ddim.config.num_train_timesteps // cfg.ddim_steps
        self.ratio = ratio
        self.grid = torch.arange(1, cfg.ddim_steps + 1) * ratio - 1  # 19, 39, ..., 999 as LCMScheduler's
        self.alphas = self.ddim.alphas_cumprod
        self.step, self.elapsed, self.history = 0, 0.0, []
        self._latents: torch.Tensor | None = None
        self._hidden: torch.Tensor | None = None

    # --- data -------------------------------------------------------------------------------------

    def _source(self) -> Any:
        if self.source is None:
            self.source = PortraitSource(DATA_SEED + self.cfg.seed, self.cfg.dataset_size)
        return self.source

    @torch.no_grad()
    def prepare(self) -> None:
        """Latents of the training renders (teacher VAE, cached in the run) and their prompts' embeddings."""
        path = self.run_dir / "latents.safetensors"
        source = self._source()
        if path.is_file():
            self._latents = load_file(str(path))["latents"].float()
        else:
            parts = []
            for start in range(0, len(source), 64):
                x, _ = batch(source, torch.arange(start, min(len(source), start + 64)))
                parts.append(self.vae.encode(x).latent_dist.mean * self.vae.config.scaling_factor)
                if start % 512 == 0:
                    log.info("encoded %d / %d", start, len(source))
            self._latents = torch.cat(parts)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_file({"latents": self._latents.half().contiguous()}, str(path))
        get = getattr(source, "caption", None)
        texts = [get(i) if get else source[i][1] for i in range(len(source))] + [""]
        ids = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids  # fmt: skip
        self._hidden = torch.cat([self.text_encoder(ids[s : s + 256])[0] for s in range(0, len(ids), 256)])

    # --- one step ---------------------------------------------------------------------------------

    def _x0_eps(self, eps: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.alphas[t].view(-1, 1, 1, 1)
        return (x - (1 - a).sqrt() * eps) / a.sqrt()

    def _consistency(self, unet: UNet2DConditionModel, x: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor,
                     w_emb: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """f(x, t): the boundary-conditioned x0 the student (or target) predicts, as LCMScheduler denoises."""
        eps = unet(x, t, hidden, timestep_cond=w_emb).sample
        c_skip, c_out = boundary_scalings(self.lcm, t)
        return c_skip * x + c_out * self._x0_eps(eps, x, t)

    def loss(self, idx: torch.Tensor, noise: torch.Tensor, n: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """LCD loss on rows `idx` with the given noise, grid indices `n` (t_{n+k} = grid[n]) and w."""
        z, hidden = self._latents[idx], self._hidden[idx]
        empty = self._hidden[-1:].expand_as(hidden)
        t = self.grid[n]
        t_prev = (t - self.ratio).clamp(min=0)
        x = self.ddim.add_noise(z, noise, t)
        w_emb = guidance_condition(w, self.cfg.cond_dim)
        pred = self._consistency(self.student, x, t, hidden, w_emb)
        with torch.no_grad():
            both = self.teacher(torch.cat([x, x]), torch.cat([t, t]), torch.cat([empty, hidden])).sample
            uncond, cond = both.chunk(2)
            ww = w.view(-1, 1, 1, 1)
            eps = cond + ww * (cond - uncond)  # teacher CFG at scale 1 + w
            x0 = self._x0_eps(eps, x, t)
            a_prev = self.alphas[t_prev].view(-1, 1, 1, 1)
            x_prev = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps  # one DDIM step of the guided ODE
            target = self._consistency(self.target, x_prev, t_prev, hidden, w_emb)
        c = self.cfg.huber_c
        return (torch.sqrt((pred - target) ** 2 + c * c) - c).mean()

    def draw(self) -> tuple[torch.Tensor, ...]:
        """A batch's random draws: rows, noise, solver-grid indices and guidance w (see `loss`)."""
        cfg, b = self.cfg, self.cfg.batch
        idx = torch.randint(len(self._latents), (b,), generator=self.gen)
        noise = torch.randn((b, *self._latents.shape[1:]), generator=self.gen)
        n = torch.randint(0, cfg.ddim_steps, (b,), generator=self.gen)
        w = cfg.w_min + (cfg.w_max - cfg.w_min) * torch.rand(b, generator=self.gen)
        return idx, noise, n, w

    def train_step(self, fraction: float, draws: tuple[torch.Tensor, ...] | None = None) -> float:
        """One optimizer step (on `draws`, else on fresh ones) and the target's EMA update."""
        cfg = self.cfg
        warmup, cosine = min(1.0, (self.step + 1) / 50), 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * fraction))
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * warmup * cosine
        loss = self.loss(*(draws or self.draw()))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.student.parameters(), 1.0)
        self.opt.step()
        with torch.no_grad():
            for tp, sp in zip(self.target.parameters(), self.student.parameters()):
                tp.lerp_(sp, 1 - cfg.target_decay)
        return float(loss.detach())

    # --- run, checkpoints -------------------------------------------------------------------------

    def run(self, budget: Budget | None = None) -> None:
        """Train until the budget (minus a save and an export) or `max_steps` runs out; checkpoint on the way."""
        budget = budget or Budget.minutes(self.cfg.minutes)
        torch.set_num_threads(self.cfg.threads)
        self.prepare()
        reserve, last_ckpt, last, cap = 30.0, time.monotonic(), 0.0, self.cfg.max_steps
        bar = tqdm(total=round(budget.remaining()), unit="s", desc="distill", mininterval=10.0)
        try:
            while budget.remaining() > reserve + last and (cap is None or self.step < cap):
                began = time.monotonic()
                fraction = min(1.0, self.elapsed / max(1.0, self.elapsed + budget.remaining() - reserve))
                loss = self.train_step(fraction)
                last = time.monotonic() - began
                self.elapsed += last
                self.step += 1
                bar.update(round(last))
                bar.set_postfix(step=self.step, loss=f"{loss:.4f}")
                if self.step % 25 == 0:
                    self.history.append({"step": self.step, "elapsed": round(self.elapsed, 1), "loss": round(loss, 5)})
                    log.info("distill step %d loss %.5f (%.0fs, %.2fs/step)", self.step, loss, self.elapsed, last)
                if time.monotonic() - last_ckpt > self.cfg.checkpoint_minutes * 60:
                    self.save()
                    last_ckpt = time.monotonic()
        except KeyboardInterrupt:
            log.warning("interrupted: saving step %d (continue with --resume)", self.step)
            self.save()
            raise
        finally:
            bar.close()
        self.save()

    def save(self) -> None:
        opt_tensors, opt_meta = optimizer_tensors(self.opt)
        meta = {"step": self.step, "elapsed": self.elapsed, "history": self.history, "config": self.cfg.to_dict(),
                "teacher": str(self.teacher_dir), "opt": opt_meta}  # fmt: skip
        save_checkpoint(self.ckpt_dir, {"student": self.student.state_dict(), "target": self.target.state_dict(),
                                        "opt": opt_tensors, "rng": {"gen": self.gen.get_state()}}, meta)  # fmt: skip
        log.info("checkpoint saved at step %d", self.step)

    def resume(self) -> bool:
        try:
            tensors, meta = load_checkpoint(self.ckpt_dir)
        except NotFound:
            return False
        self.student.load_state_dict(tensors["student"])
        self.target.load_state_dict(tensors["target"])
        load_optimizer(self.opt, tensors["opt"], meta["opt"])
        self.gen.set_state(tensors["rng"]["gen"])
        self.step, self.elapsed, self.history = meta["step"], meta["elapsed"], meta["history"]
        log.info("resumed at step %d (%.0fs trained)", self.step, self.elapsed)
        return True

    def export(self, folder: str | Path, use_target: bool = True, vae: str | Path | None = None) -> Path:
        """A `LatentConsistencyModelPipeline` folder: the student (its EMA target by default), the teacher's
        VAE, text encoder and tokenizer files as they are, diffusers' LCMScheduler, the vocabulary.

        `vae` ships another VAE folder of the same latent space instead of the teacher's, e.g. the tiny
        autoencoder distilled from it (`tiny_vae`), whose decoder is several times faster."""
        folder = Path(folder)
        vae_dir = Path(vae) if vae is not None else self.teacher_dir / "vae"
        vae_class = json.loads((vae_dir / "config.json").read_text(encoding="utf-8"))["_class_name"]
        tmp = folder.with_name(folder.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        shutil.copytree(vae_dir, tmp / "vae")
        for part in ("text_encoder", "tokenizer"):
            shutil.copytree(self.teacher_dir / part, tmp / part)
        (self.target if use_target else self.student).save_pretrained(str(tmp / "unet"), safe_serialization=True)
        self.lcm.save_pretrained(str(tmp / "scheduler"))
        index = {
            "_class_name": "LatentConsistencyModelPipeline",
            "_diffusers_version": _diffusers_version(),
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", "LCMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", vae_class],
        }
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
        write_vocabulary(tmp, caption_words())
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
        log.info("exported %s (step %d)", folder, self.step)
        return folder


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__


def distill_portrait_mini(
    out: str | Path,
    minutes: float = 90.0,
    resume: bool = False,
    teacher: str | Path | None = None,
    seed: int = 0,
    threads: int | None = None,
    budget: Budget | None = None,
    config: DistillConfig | None = None,
    vae: str | Path | None = None,
) -> Path:
    """Distil (or resume distilling) the teacher into `out`; export the student to `out/model`
    (with `vae` instead of the teacher's VAE, if given)."""
    budget = budget or Budget.minutes(minutes)
    out = Path(out)
    cfg = config or DistillConfig(seed=seed, minutes=minutes)
    if threads is not None:
        cfg.threads = threads
    if resume and teacher is None and (out / "checkpoint" / "state.json").is_file():
        teacher = load_checkpoint(out / "checkpoint")[1]["teacher"]  # the run's own teacher
    distiller = ConsistencyDistiller(teacher or default_model_path(), out, cfg)
    if resume and not distiller.resume():
        raise InvalidInput(f"{out} holds no distillation checkpoint to resume")
    distiller.run(budget)
    return distiller.export(out / "model", vae=vae)


def export_run(
    out: str | Path, folder: str | Path, teacher: str | Path | None = None, vae: str | Path | None = None
) -> Path:
    """Export a run's current checkpoint (e.g. while it still trains) to `folder`."""
    tensors, meta = load_checkpoint(Path(out) / "checkpoint")
    cfg = DistillConfig(**meta["config"])
    distiller = ConsistencyDistiller(teacher or meta["teacher"], out, cfg, source=[])
    distiller.target.load_state_dict(tensors["target"])
    distiller.step = meta["step"]
    return distiller.export(folder, vae=vae)


if __name__ == "__main__":  # export a checkpoint of a run that is still training: RUN FOLDER [VAE]
    import sys

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.stdout.write(f"{export_run(sys.argv[1], sys.argv[2], vae=(sys.argv[3:] or [None])[0])}\n")
