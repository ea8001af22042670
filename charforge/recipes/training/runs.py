"""Runs on disk: reopening a training run, and warm-starting a run of a grown architecture from an old one."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPTokenizer

from charforge.errors import InvalidInput, NotFound
from charforge.recipes.training.checkpoint import load_checkpoint
from charforge.recipes.training.config import ModelSpec, TrainConfig
from charforge.recipes.training.data import SampleSource
from charforge.recipes.training.trainer import LatentDiffusionTrainer

log = logging.getLogger(__name__)


def load_run(run_dir: str | Path, source: SampleSource) -> LatentDiffusionTrainer:
    """Rebuild a trainer from a run directory alone (spec.json + tokenizer + checkpoint), e.g. to export it."""
    run_dir = Path(run_dir)
    spec_path = run_dir / "spec.json"
    if not spec_path.is_file():
        raise NotFound(f"{run_dir} is not a training run (no spec.json)")
    raw = json.loads(spec_path.read_text(encoding="utf-8"))
    _, meta = load_checkpoint(run_dir / "checkpoint")
    cfg = TrainConfig(**meta["config"])
    spec = ModelSpec(
        raw["vae_config"],
        raw["unet_config"],
        raw["text_config"],
        raw["scheduler_config"],
        CLIPTokenizer.from_pretrained(str(run_dir / "tokenizer")),
    )
    trainer = LatentDiffusionTrainer(spec, source, cfg, run_dir)
    trainer.resume()
    return trainer


def grow_run(
    old_run: str | Path,
    new_run: str | Path,
    unet_config: dict[str, Any],
    source: SampleSource,
    zero: tuple[str, ...] = (),
) -> LatentDiffusionTrainer:
    """Start a UNet-phase run in `new_run` from `old_run`'s weights with a UNet grown by new modules.

    Everything `old_run` learnt (VAE, cached latents, text encoder, every UNet weight whose name still
    exists) carries over; the parameters named by the `zero` prefixes start at zero so the grown
    network first computes exactly what the old one did. The UNet optimizer starts afresh (its
    moments are per parameter and the parameter list changed); resume `new_run` to train it.
    """
    import shutil

    old = load_run(old_run, source)
    new_run = Path(new_run)
    if (new_run / "checkpoint").exists():
        raise InvalidInput(f"{new_run} already holds a training run")
    new_run.mkdir(parents=True, exist_ok=True)
    spec = ModelSpec(
        old.spec.vae_config, unet_config, old.spec.text_config, old.spec.scheduler_config, old.spec.tokenizer
    )
    grown = LatentDiffusionTrainer(spec, source, old.cfg, new_run)
    old_names = [name for name, _ in old.unet.named_parameters()]
    old_ema = dict(zip(old_names, old.ema_unet.shadow_params))
    missing, unexpected = grown.unet.load_state_dict(old.unet.state_dict(), strict=False)
    if unexpected:
        raise InvalidInput(f"the grown UNet lost parameters of the old one: {unexpected[:5]}")
    with torch.no_grad():
        for name, param in grown.unet.named_parameters():
            if name.startswith(zero):
                param.zero_()
    shadow = []
    for (name, param), _ema in zip(grown.unet.named_parameters(), grown.ema_unet.shadow_params):
        shadow.append(old_ema[name].clone() if name in old_ema else param.detach().clone())
    grown.ema_unet.shadow_params = shadow
    grown.ema_unet.optimization_step = old.ema_unet.optimization_step
    grown.vae.load_state_dict(old.vae.state_dict())
    grown.vae.register_to_config(scaling_factor=old.vae.config.scaling_factor)
    grown.text_encoder.load_state_dict(old.text_encoder.state_dict())
    grown.ema_text.shadow_params = [p.clone() for p in old.ema_text.shadow_params]
    grown.ema_text.optimization_step = old.ema_text.optimization_step
    grown.gen.set_state(old.gen.get_state())
    grown.finished = {k: v for k, v in old.finished.items() if k == "vae"}
    grown.history = list(old.history)
    grown.phase, grown.step, grown.elapsed = "unet", 0, 0.0
    shutil.copy2(Path(old_run) / "latents.safetensors", new_run / "latents.safetensors")
    log.info(
        "grew %s into %s: %d new UNet parameters (%s)",
        old_run,
        new_run,
        len(missing),
        ", ".join(sorted({m.split(".")[0] for m in missing})),
    )
    grown.save()
    return grown
