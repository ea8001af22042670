"""Prompt text -> CLIP embeddings, exactly as diffusers' Stable Diffusion pipelines encode them.

Matching the pipeline token for token (pad to the tokenizer's max length, truncate, optional attention
mask) is what lets charforge's output equal `StableDiffusionPipeline`'s for the same seed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from charforge.engine.loading import ModelBundle
from charforge.models import VOCABULARY_FILE, unknown_words

log = logging.getLogger(__name__)

_WARNED: set[tuple[str, tuple[str, ...]]] = set()  # (model, unknown words) already warned about


def token_ids(model: ModelBundle, prompts: Sequence[str]) -> torch.Tensor:
    """Padded, truncated token ids (B, max_length); warns when a prompt loses words to truncation."""
    tokenizer = model.tokenizer
    batch = tokenizer(
        list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    for prompt in prompts:
        length = len(tokenizer(prompt).input_ids)
        if length > tokenizer.model_max_length:
            log.warning("prompt truncated to %d tokens: %r", tokenizer.model_max_length, prompt)
    if model.vocabulary is not None:
        _warn_unknown_words(model, prompts)
    return batch


def _warn_unknown_words(model: ModelBundle, prompts: Sequence[str]) -> None:
    """A model with a closed vocabulary draws unknown words as noise (a random portrait, not a knight):
    say which words, once per model and set of words."""
    unknown = tuple(dict.fromkeys(w for p in prompts for w in unknown_words(p, model.vocabulary)))
    if not unknown or (model.source, unknown) in _WARNED:
        return
    _WARNED.add((model.source, unknown))
    log.warning(
        "words outside the vocabulary of %s are ignored by it: %s (its words: %s)",
        model.source, ", ".join(unknown), f"{model.source}/{VOCABULARY_FILE}",
    )  # fmt: skip


@torch.no_grad()
def encode_prompts(model: ModelBundle, prompts: Sequence[str]) -> torch.Tensor:
    """Embeddings (B, L, D) for a batch of prompts, in the UNet's dtype on the model's device."""
    batch = token_ids(model, prompts)
    attention_mask = None
    if getattr(model.text_encoder.config, "use_attention_mask", False):
        attention_mask = batch.attention_mask.to(model.device)
    embeds = model.text_encoder(batch.input_ids.to(model.device), attention_mask=attention_mask)[0]
    return embeds.to(device=model.device, dtype=model.text_encoder.dtype)
