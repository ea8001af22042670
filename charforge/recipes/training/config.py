"""Run settings and component shapes of a latent-diffusion training run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from transformers import CLIPTokenizer


@dataclass
class ModelSpec:
    """Diffusers/transformers configs of the components to train, plus the (already built) tokenizer."""

    vae_config: dict[str, Any]
    unet_config: dict[str, Any]
    text_config: dict[str, Any]
    scheduler_config: dict[str, Any]
    tokenizer: CLIPTokenizer


@dataclass
class TrainConfig:
    """Budgets are wall-clock minutes because the constraint is the machine's time, not an epoch count.

    `minutes` is the run's whole time: the VAE phase (with latent encoding) gets `vae_fraction`, the
    decoder phase its `decoder_minutes`, the UNet the rest. A command also has its own deadline
    (`Budget`), which shrinks the phases in proportion when overheads leave less. The learning rate
    follows a cosine over each phase's actual length, so a shorter budget still ends annealed.
    """

    seed: int = 0
    minutes: float = 55.0
    vae_fraction: float = 0.18
    vae_batch: int = 32
    vae_lr: float = 1e-3
    kl_weight: float = 1e-6
    vae_crop: int | None = 32  # train the (convolutional) VAE on random crops: 4x cheaper at 64x64
    decoder_minutes: float = 0.0  # optional last phase, the last of `minutes`: decoder-only fine-tune
    decoder_batch: int = 8
    decoder_lr: float = 5e-4
    unet_batch: int = 32
    unet_lr: float = 6e-4
    text_lr: float = 3e-4
    caption_dropout: float = 0.1
    ema_decay: float = 0.999
    checkpoint_minutes: float = 4.0
    max_steps: int | None = None  # per phase, on top of the time budget (smoke runs, tests)
    # optional latent-resolution map (rows of floats) that weights the UNet loss per position, for data
    # whose important detail sits at a known place and would otherwise be a sliver of the loss
    loss_weight: list[list[float]] | None = None
    # the same at picture resolution for the decoder phase: a decoder that blurs a few face pixels can
    # erase an expression the latents still hold
    decoder_weight: list[list[float]] | None = None
    # the decoder phase's locality term: swap the latent cells of `locality_cells` (a latent-resolution
    # 0/1 map, e.g. where an edit may act) for another sample's and penalise, with this weight, any change
    # the decoded picture shows outside them, so an edit that keeps the latents there keeps the pixels
    decoder_locality: float = 0.0
    locality_cells: list[list[float]] | None = None
    threads: int = 2
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
