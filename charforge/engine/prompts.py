"""Prompt text -> CLIP embeddings, exactly as diffusers' Stable Diffusion pipelines encode them.

Matching the pipeline token for token (pad to the tokenizer's max length, truncate, optional attention
mask) is what lets charforge's output equal `StableDiffusionPipeline`'s for the same seed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from charforge.engine.attention.tokens import expand_tokens
from charforge.engine.loading import ModelBundle

log = logging.getLogger(__name__)


def token_ids(model: ModelBundle, prompts: Sequence[str]) -> torch.Tensor:
    """Padded, truncated token ids (B, max_length); warns when a prompt loses words to truncation."""
    tokenizer = model.tokenizer
    prompts = [expand_tokens(tokenizer, p) for p in prompts]
    batch = tokenizer(
        list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    for prompt in prompts:
        length = len(tokenizer(prompt).input_ids)
        if length > tokenizer.model_max_length:
            log.warning("prompt truncated to %d tokens: %r", tokenizer.model_max_length, prompt)
    return batch


@torch.no_grad()
def encode_prompts(model: ModelBundle, prompts: Sequence[str]) -> torch.Tensor:
    """Embeddings (B, L, D) for a batch of prompts, in the UNet's dtype on the model's device."""
    batch = token_ids(model, prompts)
    attention_mask = None
    if getattr(model.text_encoder.config, "use_attention_mask", False):
        attention_mask = batch.attention_mask.to(model.device)
    embeds = model.text_encoder(batch.input_ids.to(model.device), attention_mask=attention_mask)[0]
    return embeds.to(device=model.device, dtype=model.text_encoder.dtype)
