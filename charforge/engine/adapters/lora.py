"""LoRA with peft: low-rank updates of the UNet's and the text encoder's attention projections.

Training adds a peft adapter to private copies of the UNet (`to_q`, `to_k`, `to_v`, `to_out.0`, as in
diffusers' `train_text_to_image_lora.py`) and, unless told not to, of the text encoder (`q_proj`,
`k_proj`, `v_proj`, `out_proj`, as its `--train_text_encoder`), so the shared model is never touched.
The learnt weights leave through diffusers' own `save_lora_weights`, so they are in the
`pytorch_lora_weights.safetensors` layout every diffusers pipeline loads; files coming in (diffusers,
peft or kohya layouts) are kept as they are and converted by diffusers' `load_lora_weights` when worn,
so an export gives back the imported file's tensors. Safetensors only.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file

from charforge.engine.adapters.safetensors_files import read_tensors, write_tensors
from charforge.engine.adapters.textual_inversion import TokenEncoder
from charforge.engine.adapters.training import FitResult, TrainingSet, fit
from charforge.engine.loading import ModelBundle
from charforge.errors import InvalidInput

log = logging.getLogger(__name__)

LORA_FILE = "pytorch_lora_weights.safetensors"  # the name diffusers' save_lora_weights writes
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
# The recipe measured by benchmarks/bench_look.py (README): rank 8 at lr 5e-3 for 400 steps of batch 4,
# timesteps logit-normal around sigmoid(2) ~ 0.88 of the schedule, where hair, outfit and background
# are laid out, so the late timesteps that draw the face stay mostly the base model's (rank 4 with
# uniform or mildly biased timesteps missed a held-out character's look).
LORA_RANK, LORA_STEPS, LORA_LR, LORA_TIMESTEP_BIAS = 8, 400, 5e-3, 2.0
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
# The text encoder learns too: a LoRA is prompted with its class noun ("portrait of a girl, gazing
# trustingly"), a prompt the model never saw without a full description and an intensity word, and
# the bare model draws that trusting face calm and that eager one surprised. On held-out characters
# 1 and 2 the text encoder's LoRA raised trust from 0 to 3/5 and 1/5 (training renders without a
# trusting face) and eagerness from 0 to 2/5 on character 2 (with one), keeping the look (README).
LORA_TEXT_ENCODER = True


def check_lora_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors if diffusers can read them as a Stable Diffusion LoRA (its converters decide)."""
    from diffusers import StableDiffusionPipeline

    if not tensors or not any("lora" in key for key in tensors):
        raise InvalidInput("not a LoRA: no lora weights among its tensors")
    try:
        StableDiffusionPipeline.lora_state_dict(dict(tensors))
    except Exception as exc:  # diffusers raises ValueError/KeyError/...; the user needs one line
        raise InvalidInput(f"not a LoRA diffusers can read ({str(exc).splitlines()[0][:200]})") from None
    return dict(tensors)


def read_lora(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a LoRA file (safetensors only: pickled .bin/.pt/.ckpt LoRAs can run code)."""
    tensors = read_tensors(path, "LoRA")
    return check_lora_tensors(tensors)


def write_lora(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor]) -> Path:
    """Write the tensors as a safetensors file, atomically."""
    return write_tensors(path, dict(tensors))


def _lora_config(rank: int, targets: tuple[str, ...]):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(targets))


def _diffusers_layout(unet, text_encoder) -> dict[str, torch.Tensor]:
    """The adapters' weights as diffusers' `save_lora_weights` writes them (read back from its file)."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    unet_layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    text_layers = None
    if text_encoder is not None:  # injected by peft directly: its weights carry the adapter name in their keys
        lora = {k.replace(".default.", "."): v for k, v in text_encoder.state_dict().items() if ".lora_" in k}
        text_layers = convert_state_dict_to_diffusers(lora)
    with tempfile.TemporaryDirectory() as folder:
        StableDiffusionPipeline.save_lora_weights(
            folder, unet_lora_layers=unet_layers, text_encoder_lora_layers=text_layers, weight_name=LORA_FILE
        )
        return load_file(str(Path(folder) / LORA_FILE))


def train_lora(
    model: ModelBundle,
    data: TrainingSet,
    *,
    rank: int = LORA_RANK,
    text_encoder: bool = LORA_TEXT_ENCODER,
    tokens: Mapping[str, torch.Tensor] | None = None,
    steps: int = LORA_STEPS,
    lr: float = LORA_LR,
    batch: int = 4,
    targets: Sequence[str] = UNET_TARGETS,
    timestep_bias: float | None = LORA_TIMESTEP_BIAS,
    seed: int = 0,
    progress: bool = False,
) -> tuple[dict[str, torch.Tensor], FitResult]:
    """Learn a rank-`rank` LoRA from `data`; returns its tensors in diffusers' LoRA file layout.

    `tokens` (e.g. the character's learnt token) are active, fixed, while the LoRA learns. `targets`
    are the UNet modules adapted; `text_encoder` adapts the text encoder's attention too;
    `timestep_bias` is the logit-normal mean of the training timesteps (None: uniform).
    """
    if not 1 <= rank <= 128:
        raise InvalidInput(f"rank must be between 1 and 128, got {rank}")
    torch.manual_seed(seed)  # peft's gaussian init of the A matrices
    unet = copy.deepcopy(model.unet).requires_grad_(False)
    unet.add_adapter(_lora_config(rank, tuple(targets)))
    encoder = TokenEncoder(model, tokens or {})
    encoder.text_encoder.requires_grad_(False)
    modules = {"unet": unet}
    if text_encoder:
        from peft import inject_adapter_in_model

        inject_adapter_in_model(_lora_config(rank, TEXT_TARGETS), encoder.text_encoder)
        modules["text_encoder"] = encoder.text_encoder
    params = {
        f"{prefix}.{name}": p
        for prefix, module in modules.items()
        for name, p in module.named_parameters()
        if p.requires_grad
    }

    def snapshot() -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in params.items()}

    result = fit(
        model, data, list(params.values()), encoder, snapshot, unet=unet,
        steps=steps, lr=lr, batch=batch, seed=seed, timestep_bias=timestep_bias, progress=progress,
        desc=f"learn LoRA r{rank}",
    )  # fmt: skip
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(result.state[name])
    return _diffusers_layout(unet, encoder.text_encoder if text_encoder else None), result
