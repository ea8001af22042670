"""charforge-mini-bgm: the portrait model's component language, shaped for 128 x 256 full-band spectrograms.

Same parts as every charforge model (AutoencoderKL, UNet2DConditionModel, CLIP text encoder and
tokenizer, DDIM), trained by the generic trainer on `BGMSource`. The shapes follow from the `full`
preset (128 mel bins to 8 kHz) and one CPU thread: an 8x VAE with 16 latent channels gives 16 x 32
latents holding a quarter as many numbers as pixels, the old 4x/4-channel model's ratio (8 channels,
an eighth, lost the mode: a 850-step VAE of that shape kept it in 0 of 12 held-out spectrograms).
The UNet sees half the old model's positions; its top level has no attention, and cross-attention
runs at 8 x 16 (128 tokens) and 4 x 8, where a cell spans ~0.75 s and 16 mel bins. A training step
(batch 16, forward and backward, one thread) measured 1.0 s against the old 64-bin model's 2.3 s on
the same loaded machine.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from charforge.audio.codec import get_preset
from charforge.models import write_vocabulary
from charforge.recipes.bgm_mini.dataset import BGMSource, caption_words
from charforge.recipes.portrait_mini.architecture import scheduler_config, text_config
from charforge.recipes.portrait_mini.tokenizer import build_tokenizer
from charforge.recipes.training import LatentDiffusionTrainer, ModelSpec, TrainConfig
from charforge.recipes.training.budget import Budget
from charforge.recipes.training.runs import load_run

log = logging.getLogger(__name__)

PRESET = "full"
VAE_FACTOR = 8
LATENT_CHANNELS = 16
DATA_SEED = 5321
DATASET_SIZE = 3000


def image_size() -> tuple[int, int]:
    """(height, width) of one spectrogram tile in pixels."""
    p = get_preset(PRESET)
    return p.n_mels, p.width


def vae_config() -> dict[str, Any]:
    height, width = image_size()
    return dict(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, sample_size=height,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 64, 64, 64), layers_per_block=1, norm_num_groups=16,
    )


def unet_config() -> dict[str, Any]:
    height, width = image_size()
    return dict(
        sample_size=[height // VAE_FACTOR, width // VAE_FACTOR], in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64, 128), layers_per_block=1, cross_attention_dim=text_width(),
        attention_head_dim=4, norm_num_groups=16,
    )


def text_width() -> int:
    return text_config(1, 0, 0, 0)["hidden_size"]


def bgm_spec(tokenizer_dir: str | Path) -> ModelSpec:
    tok = build_tokenizer(tokenizer_dir, caption_words())
    return ModelSpec(vae_config(), unet_config(),
                     text_config(len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id),
                     scheduler_config(), tok)


def recipe_config(seed: int, minutes: float, threads: int = 1) -> TrainConfig:
    return TrainConfig(seed=seed, minutes=minutes, vae_fraction=0.275, vae_batch=8, vae_lr=1e-3, vae_crop=32,
                       unet_batch=16, unet_lr=6e-4, text_lr=3e-4, caption_dropout=0.1, decoder_minutes=0.0,
                       threads=threads, checkpoint_minutes=3.0)


def train_bgm_mini(out: str | Path, minutes: float = 45.0, resume: bool = False, seed: int = 0,
                   dataset_size: int = DATASET_SIZE, threads: int = 1, budget: Budget | None = None) -> Path:
    """Train (or resume) in `out`, export to `out/model`, return that folder.

    `budget` is the whole call's wall-clock time (default: `minutes` from now): rendering the
    spectrograms and the export come out of it too.
    """
    budget = budget or Budget.minutes(minutes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source = BGMSource(DATA_SEED + seed, dataset_size, PRESET)
    if not (resume and (out / "latents.safetensors").is_file()):
        # a run resumed after its VAE phase trains on the cached latents and captions: no pixels needed
        source.prerender(out / "spectrograms.npy")
    if resume and (out / "spec.json").is_file():
        trainer = load_run(out, source)
        trainer.cfg.minutes = minutes  # a resumed run may be given more (or less) time
        trainer.cfg.threads = threads
    else:
        config = recipe_config(seed, minutes, threads)
        trainer = LatentDiffusionTrainer(bgm_spec(out / "tokenizer"), source, config, out)
    trainer.run(budget)
    return _export(trainer, out / "model")


def export_bgm_mini(run_dir: str | Path, folder: str | Path) -> Path:
    """Export a run's current weights (EMA) as a diffusers folder, e.g. into charforge/models/bgm-mini."""
    trainer = load_run(run_dir, BGMSource(DATA_SEED, 1, PRESET))
    return _export(trainer, folder)


def _export(trainer: LatentDiffusionTrainer, folder: str | Path) -> Path:
    """The diffusers folder, with the caption words it was trained on declared as its vocabulary."""
    folder = trainer.export(folder)
    write_vocabulary(folder, caption_words())
    return folder
