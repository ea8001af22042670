"""Write a diffusers model as an original (LDM / A1111) single-file checkpoint, for tests only.

Most checkpoints users download are single `.safetensors` files in the original Stable Diffusion key
layout. diffusers converts that layout on load; to test the path offline we need such a file for the
tiny model, so this maps the other way. It covers the SD 1.x layout the tiny model uses.
"""

from __future__ import annotations

import re

import torch
from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))  # fmt: skip
_VAE_ATTENTION = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def _rename(rest: str, pairs) -> str:
    head, _, tail = rest.partition(".")
    for new, old in pairs:
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    return rest if not tail else f"{head}.{tail}"


def unet_to_ldm(state: dict[str, torch.Tensor], layers_per_block: int) -> dict[str, torch.Tensor]:
    fixed = dict(DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"])
    per_block = layers_per_block + 1
    up_has_attention = {int(m.group(1)) for k in state if (m := re.match(r"up_blocks\.(\d+)\.attentions", k))}
    out = {}
    for key, tensor in state.items():
        if key in fixed:
            new = fixed[key]
        elif m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"input_blocks.{1 + int(m[1]) * per_block + int(m[2])}.0.{_rename(m[3], _RESNET)}"
        elif m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
            new = f"input_blocks.{1 + int(m[1]) * per_block + int(m[2])}.1.{m[3]}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"input_blocks.{1 + int(m[1]) * per_block + layers_per_block}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
            new = f"middle_block.{2 * int(m[1])}.{_rename(m[2], _RESNET)}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"output_blocks.{int(m[1]) * per_block + int(m[2])}.0.{_rename(m[3], _RESNET)}"
        elif m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
            new = f"output_blocks.{int(m[1]) * per_block + int(m[2])}.1.{m[3]}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            slot = 2 if int(m[1]) in up_has_attention else 1
            new = f"output_blocks.{int(m[1]) * per_block + layers_per_block}.{slot}.conv.{m[2]}"
        else:
            raise KeyError(f"no LDM name for unet key {key}")
        out["model.diffusion_model." + new] = tensor
    return out


def vae_to_ldm(state: dict[str, torch.Tensor], num_blocks: int) -> dict[str, torch.Tensor]:
    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    out = {}
    for key, tensor in state.items():
        if key in fixed:
            new = fixed[key]
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", key):
            new = f"{m[1]}.mid.attn_1.{_rename(m[2], _VAE_ATTENTION)}"
            tensor = tensor[:, :, None, None] if tensor.ndim == 2 else tensor  # LDM uses 1x1 convs
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"decoder.up.{num_blocks - 1 - int(m[1])}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            new = f"decoder.up.{num_blocks - 1 - int(m[1])}.upsample.conv.{m[2]}"
        else:
            raise KeyError(f"no LDM name for vae key {key}")
        out["first_stage_model." + new] = tensor
    return out


def to_ldm_checkpoint(unet, vae, text_encoder) -> dict[str, torch.Tensor]:
    """One flat state dict in the original SD 1.x layout."""
    checkpoint = unet_to_ldm(unet.state_dict(), unet.config.layers_per_block)
    checkpoint.update(vae_to_ldm(vae.state_dict(), len(vae.config.block_out_channels)))
    for key, tensor in text_encoder.state_dict().items():
        # original checkpoints nest CLIP under `text_model.`; recent transformers flattened CLIPTextModel
        key = key if key.startswith("text_model.") else f"text_model.{key}"
        checkpoint[f"cond_stage_model.transformer.{key}"] = tensor
    return {k: v.contiguous() for k, v in checkpoint.items()}
