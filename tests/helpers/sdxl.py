"""A tiny random SDXL, built in code and saved as a real diffusers folder (no download).

The layout is SDXL's, shrunk the way diffusers' own SDXL pipeline tests shrink it: two text encoders
(a `CLIPTextModel` and a `CLIPTextModelWithProjection` whose pooled projection feeds the UNet's
`text_time` embedding), cross-attention dim = the two hidden sizes concatenated, `add_time_ids` of six
numbers. The encoders get different hidden sizes (32 and 48) on purpose: single-file conversion tells
them apart by shape, as it does for real checkpoints (768 vs 1280). The second tokenizer pads with
"!" like SDXL's OpenCLIP one, so code that pads with the first tokenizer's id is caught.
"""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import TINY_IMAGE_SIZE, build_tiny_tokenizer

TIME_EMBED_DIM = 8
HIDDEN_1, HIDDEN_2, PROJECTION = 32, 48, 32


def _text_config(hidden: int, **extra):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=hidden, intermediate_size=37,
        layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=3, vocab_size=len(build_tiny_tokenizer()),
        max_position_embeddings=77, hidden_act="gelu", **extra,
    )  # fmt: skip


def build_tiny_sdxl_components(in_channels: int = 4) -> dict:
    """Seeded tiny SDXL components (UNet with `text_time` addition embedding, two encoders, Euler)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=TINY_IMAGE_SIZE // 2, in_channels=in_channels, out_channels=4,
        block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time", addition_time_embed_dim=TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=6 * TIME_EMBED_DIM + PROJECTION,
        cross_attention_dim=HIDDEN_1 + HIDDEN_2, norm_num_groups=16,
    ).eval()  # fmt: skip
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, sample_size=TINY_IMAGE_SIZE,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        force_upcast=True, scaling_factor=0.13025,
    ).eval()  # fmt: skip
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_text_config(HIDDEN_1)).eval()
    torch.manual_seed(1)
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(HIDDEN_2, projection_dim=PROJECTION)).eval()
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading",
    )  # fmt: skip
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": build_tiny_tokenizer(),
        "tokenizer_2": build_tiny_tokenizer(pad_token="!"),
        "scheduler": scheduler,
    }


def save_tiny_sdxl(path: Path, in_channels: int = 4) -> Path:
    """Write the tiny SDXL as a diffusers folder (safetensors), through the pipeline class a user's has."""
    from diffusers import StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline

    cls = StableDiffusionXLInpaintPipeline if in_channels == 9 else StableDiffusionXLPipeline
    cls(**build_tiny_sdxl_components(in_channels)).save_pretrained(path, safe_serialization=True)
    return path


def to_sdxl_checkpoint(model) -> dict[str, torch.Tensor]:
    """The bundle's weights as one flat state dict in the original SDXL layout (`model.diffusion_model`,
    `first_stage_model`, `conditioner.embedders.0.transformer` for CLIP ViT-L style and
    `conditioner.embedders.1.model` in OpenCLIP's names for the second encoder), the inverse of the
    conversion diffusers' `from_single_file` applies."""
    from ldm_format import unet_to_ldm, vae_to_ldm

    unet_state = dict(model.unet.state_dict())
    checkpoint: dict[str, torch.Tensor] = {}
    for key in [k for k in unet_state if k.startswith("add_embedding.")]:
        layer, param = key.split(".")[1:]
        checkpoint[f"model.diffusion_model.label_emb.0.{0 if layer == 'linear_1' else 2}.{param}"] = unet_state.pop(key)
    checkpoint.update(unet_to_ldm(unet_state, model.unet.config.layers_per_block))
    checkpoint.update(vae_to_ldm(model.vae.state_dict(), len(model.vae.config.block_out_channels)))
    for key, tensor in model.text_encoder.state_dict().items():
        key = key if key.startswith("text_model.") else f"text_model.{key}"
        checkpoint[f"conditioner.embedders.0.transformer.{key}"] = tensor
    checkpoint.update(_open_clip(model.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    return {k: v.contiguous() for k, v in checkpoint.items()}


def _open_clip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """A `CLIPTextModelWithProjection` state dict in OpenCLIP's names (q/k/v fused, projection transposed)."""
    out = {
        "token_embedding.weight": state["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": state["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": state["text_model.final_layer_norm.weight"],
        "ln_final.bias": state["text_model.final_layer_norm.bias"],
        "text_projection": state["text_projection.weight"].T,
    }
    layers = {int(k.split(".")[3]) for k in state if k.startswith("text_model.encoder.layers.")}
    names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
             "self_attn.out_proj": "attn.out_proj"}  # fmt: skip
    for i in sorted(layers):
        src, dst = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for param in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{param}"] = torch.cat(
                [state[f"{src}self_attn.{p}_proj.{param}"] for p in ("q", "k", "v")]
            )
            for ours, theirs in names.items():
                out[f"{dst}{theirs}.{param}"] = state[f"{src}{ours}.{param}"]
    return {prefix + k: v for k, v in out.items()}
