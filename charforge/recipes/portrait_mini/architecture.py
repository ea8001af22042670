"""Component shapes of charforge-mini: Stable Diffusion's architecture, shrunk to train in an hour on 2 CPU cores.

Cross-attention lives only at 16x16 and below (the whole UNet works on 16x16x4 latents), because
attention at higher resolution is several times slower on CPU and the prompt words only need to
steer coarse regions (hair, outfit, background, face). Diffusers' `addition_embed_type="text"`
also adds an attention-pooled prompt vector to the time embedding (a stock UNet2DConditionModel
option, so plain StableDiffusionPipeline loads it).
"""

from __future__ import annotations

from typing import Any

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

IMAGE_SIZE = 64
LATENT_SIZE = 16
LATENT_CHANNELS = 4
TEXT_WIDTH = 128


def vae_config() -> dict[str, Any]:
    return dict(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, sample_size=IMAGE_SIZE,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=16,
    )


def unet_config() -> dict[str, Any]:
    return dict(
        sample_size=LATENT_SIZE, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(64, 96, 128), layers_per_block=1, cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=4, norm_num_groups=16,
        # a pooled prompt vector added to the time embedding reaches every ResNet block, which is how
        # class-conditional DDPMs learn global attributes fast; through cross-attention alone the
        # expression and outfit words were still ignored after 2,200 CPU steps (see the model card)
        addition_embed_type="text", addition_embed_type_num_heads=4,
    )


# the grown part of the UNet that starts at zero when an older run is warm-started (`recipe grow`)
GROWN_PREFIXES = ("add_embedding.norm2.",)


def text_config(vocab_size: int, bos_token_id: int, eos_token_id: int, pad_token_id: int) -> dict[str, Any]:
    return dict(
        vocab_size=vocab_size, hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=TEXT_WIDTH,
        bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
    )


def scheduler_config() -> dict[str, Any]:
    """SD 1.x's noise schedule; DDIM so sampling and inversion are deterministic."""
    return dict(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
    )


def build_components(tokenizer: CLIPTokenizer) -> dict[str, Any]:
    """Fresh, randomly initialised components (training starts here; tests may use them too)."""
    return {
        "vae": AutoencoderKL(**vae_config()),
        "unet": UNet2DConditionModel(**unet_config()),
        "text_encoder": CLIPTextModel(CLIPTextConfig(**text_config(
            len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id))),
        "scheduler": DDIMScheduler(**scheduler_config()),
    }
