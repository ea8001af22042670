"""A toy picture source and tiny shapes for the generic trainer (tests/recipes)."""

from __future__ import annotations

from pathlib import Path

import torch

from charforge.recipes.portrait_mini.tokenizer import build_tokenizer
from charforge.recipes.training import ModelSpec, TrainConfig


class ToySource:
    """Sixteen 16x16 two-colour pictures; `fail_after` simulates a crash mid-run."""

    def __init__(self, fail_after: int | None = None) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(16, 3, 1, 1, generator=g).expand(16, 3, 16, 16).clone() * 2 - 1
        self.images[:, :, 4:12, 4:12] *= -1
        self.fail_after, self.calls = fail_after, 0

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("simulated crash")
        return self.images[i], "portrait of a girl with red hair" if i % 2 else "blue outfit"


def tiny_spec(tmp_path: Path) -> ModelSpec:
    tok = build_tokenizer(tmp_path / "tok")
    return ModelSpec(
        vae_config=dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=16,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=(8, 8), layers_per_block=1, norm_num_groups=4),
        unet_config=dict(sample_size=8, in_channels=4, out_channels=4,
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=(16, 16),
                         layers_per_block=1, cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4),
        text_config=dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        scheduler_config=dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, clip_sample=False, set_alpha_to_one=False, steps_offset=1),
        tokenizer=tok,
    )


def tiny_config(**kw) -> TrainConfig:
    base = dict(threads=1, minutes=60.0, max_steps=3, vae_fraction=0.4, decoder_minutes=10.0, vae_batch=4, unet_batch=4,
                checkpoint_minutes=100.0, vae_crop=8, ema_decay=0.9)
    return TrainConfig(**{**base, **kw})
