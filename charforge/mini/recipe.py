"""The one training recipe of charforge-mini: renderer data + mini shapes + the generic trainer.

`charforge train portrait-mini --out DIR` calls `train_portrait_mini`; the run directory holds the
checkpoint (resumable) and, when training ends, the exported diffusers folder in DIR/model.
"""

from __future__ import annotations

import logging
from pathlib import Path

from charforge.mini.architecture import scheduler_config, text_config, unet_config, vae_config
from charforge.mini.dataset import PortraitSource
from charforge.mini.tokenizer import build_tokenizer
from charforge.training import LatentDiffusionTrainer, ModelSpec, TrainConfig
from charforge.training.trainer import load_run

log = logging.getLogger(__name__)

DATA_SEED = 1234
DATASET_SIZE = 10000


def portrait_spec(tokenizer_dir: str | Path) -> ModelSpec:
    tok = build_tokenizer(tokenizer_dir)
    return ModelSpec(vae_config(), unet_config(),
                     text_config(len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id),
                     scheduler_config(), tok)


def recipe_config(seed: int, minutes: float) -> TrainConfig:
    # small VAE batches: on 2 CPU cores the autoencoder is limited by optimizer steps, not by data
    return TrainConfig(seed=seed, minutes=minutes, vae_fraction=0.25, vae_batch=8, vae_lr=1e-3,
                       unet_lr=8e-4, text_lr=4e-4)


def train_portrait_mini(out: str | Path, minutes: float = 55.0, resume: bool = False, seed: int = 0,
                        dataset_size: int = DATASET_SIZE) -> Path:
    """Train (or resume) in `out`, export to `out/model`, return that folder."""
    out = Path(out)
    source = PortraitSource(DATA_SEED + seed, dataset_size)
    if resume and (out / "spec.json").is_file():
        trainer = load_run(out, source)
        trainer.cfg.minutes = minutes  # a resumed run may be given more (or less) time
    else:
        spec = portrait_spec(out / "tokenizer")
        trainer = LatentDiffusionTrainer(spec, source, recipe_config(seed, minutes), out)
    trainer.run()
    return trainer.export(out / "model")
