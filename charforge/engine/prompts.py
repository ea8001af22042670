"""Prompt text -> the UNet's text conditioning, exactly as diffusers' pipelines encode it, for any length.

A prompt of up to 75 tokens is encoded token for token as diffusers' Stable Diffusion (1.x/2.x) and
SDXL pipelines encode it (BOS, tokens, EOS, the tokenizer's own padding to 77), which is what lets
charforge's images equal theirs for the same seed. Longer prompts are not truncated: as in the
long-prompt pipelines of diffusers' community and A1111, the tokens are cut into chunks of 75, each
chunk is wrapped in BOS/EOS/padding and encoded on its own, and the chunks' hidden states are
concatenated along the sequence (so the UNet attends over 77·k columns). Every row of a batch gets
the same number of chunks; short rows get empty chunks (the encoding of "").

Emphasis uses the syntax of Stable Diffusion front ends ("(smiling:1.3)", "((red))", "[sad]"): each
token's hidden state is multiplied by its weight, then the whole prompt's embedding is rescaled to its
original mean, A1111's rule, which keeps the overall magnitude the UNet was trained on (so prompts
written for A1111 keep their balance here). A prompt
without emphasis goes through untouched (bit-identical to the unweighted encoding).

SDXL concatenates the penultimate hidden states of its two encoders and also conditions on the second
encoder's pooled projection (of the first chunk, as A1111 does) and on six size numbers
(`add_time_ids`: original size, crop corner, target size).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from charforge.engine.loading import ModelBundle
from charforge.errors import InvalidInput

log = logging.getLogger(__name__)

CHUNK_TOKENS = 75  # tokens per chunk between BOS and EOS (77 positions in all for CLIP)


@dataclass(frozen=True)
class PromptEmbeds:
    """Per-row text conditioning: token embeddings for cross-attention (B, L, D) and, for SDXL, the
    pooled text embedding (B, P) and size numbers (B, 6) of the UNet's `text_time` embedding.

    `time_ids` may be left None: the loop then uses the image's own size, diffusers' default.
    """

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def rows(self, rows: Sequence[int]) -> PromptEmbeds:
        rows = list(rows)
        return PromptEmbeds(*(None if t is None else t[rows] for t in (self.embeds, self.pooled, self.time_ids)))

    def expand(self, batch: int) -> PromptEmbeds:
        """One row broadcast to `batch` rows (an unconditional embedding shared by every image)."""
        if len(self) == batch:
            return self
        return PromptEmbeds(*(None if t is None else t.expand(batch, *t.shape[1:]) for t in self._parts()))

    def with_embeds(self, embeds: torch.Tensor) -> PromptEmbeds:
        """The same pooled/size conditioning under other token embeddings (per-step null-text ones)."""
        return replace(self, embeds=embeds.to(device=self.embeds.device, dtype=self.embeds.dtype))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> PromptEmbeds:
        return PromptEmbeds(*(None if t is None else t.to(device=device, dtype=dtype) for t in self._parts()))

    def unet_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `UNet2DConditionModel.forward` for these rows."""
        kwargs: dict[str, Any] = {"encoder_hidden_states": self.embeds}
        if self.pooled is not None:
            if self.time_ids is None:
                raise ValueError("SDXL conditioning needs time_ids (use PromptEmbeds.with_size)")
            kwargs["added_cond_kwargs"] = {"text_embeds": self.pooled, "time_ids": self.time_ids}
        return kwargs

    def with_size(
        self,
        model: ModelBundle,
        height: int,
        width: int,
        original_size: tuple[int, int] | None = None,
        crop_top_left: tuple[int, int] = (0, 0),
        target_size: tuple[int, int] | None = None,
    ) -> PromptEmbeds:
        """SDXL's size conditioning for every row (a no-op for SD 1.x/2.x, which has none)."""
        if self.pooled is None:
            return self
        ids = add_time_ids(model, height, width, original_size, crop_top_left, target_size)
        return replace(self, time_ids=ids.to(self.pooled.device, self.pooled.dtype).expand(len(self), -1))

    @property
    def chunks(self) -> int:
        """How many 77-token chunks the rows were encoded in."""
        return self.embeds.shape[1] // (CHUNK_TOKENS + 2)

    def for_latents(self, model: ModelBundle, latents: torch.Tensor) -> PromptEmbeds:
        """Ready for the UNet on `latents`: an SDXL model needs pooled embeddings, and size numbers,
        which default to the image's own size (what diffusers' pipelines pass)."""
        if model.family != "sdxl":
            return self
        if self.pooled is None:
            raise InvalidInput("an SDXL model needs pooled text embeddings: encode prompts with encode_text")
        if self.time_ids is not None:
            return self
        factor = model.vae_scale_factor
        return self.with_size(model, latents.shape[-2] * factor, latents.shape[-1] * factor)

    def _parts(self) -> tuple[torch.Tensor | None, ...]:
        return self.embeds, self.pooled, self.time_ids

    @staticmethod
    def cat(parts: Sequence[PromptEmbeds]) -> PromptEmbeds:
        """Rows of several conditionings in order; they must agree on length and on what they carry."""
        lengths = {p.embeds.shape[1] for p in parts}
        if len(lengths) > 1:
            raise InvalidInput(
                f"prompt embeddings of different lengths ({sorted(lengths)} tokens) cannot share a batch; "
                "encode long prompts and their negatives together"
            )
        return PromptEmbeds(
            *(None if part[0] is None else torch.cat(part) for part in zip(*(p._parts() for p in parts)))
        )


def add_time_ids(
    model: ModelBundle,
    height: int,
    width: int,
    original_size: tuple[int, int] | None = None,
    crop_top_left: tuple[int, int] = (0, 0),
    target_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """(1, 6) SDXL size numbers: original (h, w), crop corner (top, left), target (h, w); the original
    and target default to the image size, as in diffusers. Checked against the UNet's embedding width
    so a mismatched model fails here, naming the cause, not deep inside the UNet."""
    ids = [*(original_size or (height, width)), *crop_top_left, *(target_size or (height, width))]
    expected = model.unet.add_embedding.linear_1.in_features
    passed = model.unet.config.addition_time_embed_dim * len(ids) + model.text_encoder_2.config.projection_dim
    if expected != passed:
        raise InvalidInput(
            f"the UNet expects a {expected}-wide text_time embedding but size + pooled text give {passed}"
        )
    return torch.tensor([ids], dtype=model.dtype, device=model.device)


_EMPHASIS = re.compile(r"\\[()\[\]]|\(|\)|\[|\]|:\s*([+-]?\d*\.?\d+)\s*\)|[^\\()\[\]:]+|:")


def parse_emphasis(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """Split "a (smiling:1.4) girl, ((red)) hair, [sad]" into plain text and weighted segments.

    The syntax is the one Stable Diffusion front ends use: (text:w) sets w, (text) multiplies by 1.1,
    [text] divides by 1.1, nesting multiplies, \\( is a literal bracket. Returns the prompt with the
    markup removed and its pieces with their weights, in order (their concatenation is the text).
    """
    segments: list[tuple[str, float]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for k in range(start, len(segments)):
            segments[k] = (segments[k][0], segments[k][1] * factor)

    for match in _EMPHASIS.finditer(prompt):
        text, weight = match.group(0), match.group(1)
        if text.startswith("\\"):
            segments.append((text[1:], 1.0))
        elif text == "(":
            round_open.append(len(segments))
        elif text == "[":
            square_open.append(len(segments))
        elif weight is not None and round_open:
            scale(round_open.pop(), float(weight))
        elif text == ")" and round_open:
            scale(round_open.pop(), 1.1)
        elif text == "]" and square_open:
            scale(square_open.pop(), 1 / 1.1)
        elif weight is not None or text in (")", "]"):
            raise InvalidInput(f"unbalanced emphasis bracket in prompt '{prompt}'")
        else:
            segments.append((text, 1.0))
    if round_open or square_open:
        raise InvalidInput(f"unclosed emphasis bracket in prompt '{prompt}'")
    merged: list[tuple[str, float]] = []
    for text, w in segments:
        if merged and merged[-1][1] == w:
            merged[-1] = (merged[-1][0] + text, w)
        else:
            merged.append((text, w))
    return "".join(text for text, _ in merged), merged


def expand_tokens(tokenizer: Any, prompt: str) -> str:
    """`prompt` with each multi-vector textual-inversion token written out as its sub-tokens (`<tok>` ->
    `<tok> <tok>_1 ...`) by diffusers' own `maybe_convert_prompt`, as its pipelines do before encoding."""
    if all(added.special for added in tokenizer.added_tokens_decoder.values()):
        return prompt
    from diffusers.loaders import TextualInversionLoaderMixin

    return TextualInversionLoaderMixin().maybe_convert_prompt(prompt, tokenizer)


def weighted_tokens(tokenizer: Any, prompt: str) -> tuple[list[int], list[float]]:
    """Token ids of `prompt` without BOS/EOS (markup removed) and each token's emphasis weight.

    Each weighted segment is tokenized on its own, as A1111 does; a prompt without markup is one
    segment, so its ids are exactly the tokenizer's.
    """
    ids: list[int] = []
    weights: list[float] = []
    for text, weight in parse_emphasis(prompt)[1]:
        piece = tokenizer(expand_tokens(tokenizer, text), add_special_tokens=False).input_ids
        ids.extend(piece)
        weights.extend([weight] * len(piece))
    return ids, weights


def _chunks(tokenizer: Any, ids: list[int], weights: list[float], count: int) -> tuple[torch.Tensor, ...]:
    """(count, 77) ids, weights and attention mask: 75 tokens per chunk between BOS and EOS, then the
    tokenizer's own padding (masked out, for the encoders that take a mask)."""
    width = CHUNK_TOKENS + 2
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    chunk_ids = torch.full((count, width), pad, dtype=torch.long)
    chunk_weights = torch.ones(count, width)
    mask = torch.zeros(count, width, dtype=torch.long)
    for k in range(count):
        part = ids[k * CHUNK_TOKENS : (k + 1) * CHUNK_TOKENS]
        chunk_ids[k, : len(part) + 2] = torch.tensor([tokenizer.bos_token_id, *part, tokenizer.eos_token_id])
        chunk_weights[k, 1 : len(part) + 1] = torch.tensor(weights[k * CHUNK_TOKENS : (k + 1) * CHUNK_TOKENS])
        mask[k, : len(part) + 2] = 1
    return chunk_ids, chunk_weights, mask


def _check_tokenizer(tokenizer: Any) -> None:
    if tokenizer.model_max_length != CHUNK_TOKENS + 2:
        raise InvalidInput(f"tokenizers of {tokenizer.model_max_length} positions are not supported (CLIP has 77)")


def encode_pair(
    model: ModelBundle, prompts: Sequence[str], negatives: Sequence[str]
) -> tuple[PromptEmbeds, PromptEmbeds]:
    """Prompts and their negatives, encoded together so long ones get the same number of chunks."""
    both = encode_text(model, [*prompts, *negatives])
    cond, uncond = both.rows(range(len(prompts))), both.rows(range(len(prompts), len(both)))
    return cond, _zero_empty(model, uncond, negatives)


def encode_negative(model: ModelBundle, negatives: Sequence[str], min_chunks: int = 1) -> PromptEmbeds:
    """Unconditional rows. An empty negative of an SDXL model that asks for it
    (`force_zeros_for_empty_prompt`) is zeros, which is how SDXL pipelines treat a missing negative."""
    return _zero_empty(model, encode_text(model, negatives, min_chunks=min_chunks), negatives)


def _zero_empty(model: ModelBundle, uncond: PromptEmbeds, negatives: Sequence[str]) -> PromptEmbeds:
    if not model.zero_empty_negative:
        return uncond
    empty = torch.tensor([n == "" for n in negatives], device=uncond.embeds.device)
    return PromptEmbeds(
        torch.where(empty[:, None, None], torch.zeros_like(uncond.embeds), uncond.embeds),
        torch.where(empty[:, None], torch.zeros_like(uncond.pooled), uncond.pooled),
    )


@torch.no_grad()
def encode_text(model: ModelBundle, prompts: Sequence[str], min_chunks: int = 1) -> PromptEmbeds:
    """Conditioning for a batch of prompts (any length, with emphasis), in the model's dtype and device;
    at least `min_chunks` chunks of 77 (to match rows encoded elsewhere)."""
    prompts = list(prompts)
    sdxl = model.family == "sdxl"
    tokenized = []
    for tokenizer, _ in model.text_encoders:
        _check_tokenizer(tokenizer)
        tokenized.append([weighted_tokens(tokenizer, p) for p in prompts])
    longest = max(len(ids) for rows in tokenized for ids, _ in rows)
    count = max(min_chunks, -(-longest // CHUNK_TOKENS))
    if count > 1:
        log.info("long prompt: %d tokens encoded as %d chunks of %d", longest, count, CHUNK_TOKENS)

    hidden, pooled, weights = [], None, None
    for (tokenizer, encoder), rows in zip(model.text_encoders, tokenized):
        chunked = [_chunks(tokenizer, ids, w, count) for ids, w in rows]
        ids, weights, mask = (torch.stack(part).flatten(0, 1).to(model.device) for part in zip(*chunked))
        if not getattr(encoder.config, "use_attention_mask", False):
            mask = None
        out = encoder(ids, attention_mask=mask, output_hidden_states=sdxl)
        states = out.hidden_states[-2] if sdxl else out[0]
        hidden.append(states.reshape(len(prompts), -1, states.shape[-1]))
        if sdxl and out[0].ndim == 2:  # the projection model's pooled output, first chunk of each row
            pooled = out[0].reshape(len(prompts), count, -1)[:, 0]
    weights = weights.reshape(len(prompts), -1)  # emphasis is the same for both encoders' tokens
    embeds = torch.cat(hidden, dim=-1)
    embeds = torch.stack([_emphasise(e, w) for e, w in zip(embeds, weights)])
    cast = dict(device=model.device, dtype=model.text_encoder.dtype)
    return PromptEmbeds(embeds.to(**cast), None if pooled is None else pooled.to(**cast))


def _emphasise(embeds: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Scale each token's hidden state by its weight, then restore the prompt's mean (A1111's rule).

    Encoders whose output is layer-normed without a learned shift have a mean of ~0, where the ratio
    of means is noise; their embedding is then only scaled.
    """
    if bool((weights == 1).all()):
        return embeds
    original = embeds.mean()
    weighted = embeds * weights.to(embeds.device, embeds.dtype)[:, None]
    if original.abs() < 1e-3 * embeds.abs().mean():
        return weighted
    return weighted * (original / weighted.mean())


def encode_prompts(model: ModelBundle, prompts: Sequence[str]) -> torch.Tensor:
    """Token embeddings (B, L, D) only: what SD 1.x/2.x models and attention tools need."""
    return encode_text(model, prompts).embeds
