"""Textual inversion: new token embeddings that make a frozen model draw one subject.

Training follows the paper and diffusers' `textual_inversion.py` example: only the new rows of the
text encoder's token-embedding table learn, against the denoising loss, everything else frozen. It
runs on private copies of the tokenizer and text encoder, so the shared model is never touched (a
crash or Ctrl-C cannot leave a half-trained token in it). A token of N vectors is N tokens named as
diffusers' `load_textual_inversion` names them (`<tok>`, `<tok>_1`, ...), which is what makes the
exported `learned_embeds.safetensors` load in any diffusers pipeline. Reading accepts the
safetensors layouts that loader reads (diffusers: one tensor keyed by its token; A1111: `emb_params`
or `string_to_param.*`); pickled embeddings are refused.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from charforge.engine.adapters.safetensors_files import read_tensors, write_tensors
from charforge.engine.adapters.training import FitResult, TrainingSet, fit
from charforge.engine.loading import ModelBundle
from charforge.errors import InvalidInput

log = logging.getLogger(__name__)

EMBEDDING_FILE = "learned_embeds.safetensors"  # the name diffusers' training script writes
_TOKEN = re.compile(r"^<?[A-Za-z][A-Za-z0-9_\-]{0,38}>?$")
_A1111_KEYS = ("emb_params", "string_to_param.*", "*")


def check_token(token: str) -> str:
    """A token must be one word of letters, digits, `_` or `-` (optionally in <angle brackets>)."""
    if not isinstance(token, str) or not _TOKEN.match(token):
        raise InvalidInput(f"bad token {token!r}: use one word such as <mira> (letters, digits, _ or -)")
    return token


def sub_tokens(token: str, vectors: int) -> list[str]:
    """The tokenizer entries of a token of `vectors` vectors, named as diffusers' loader names them."""
    return [token, *(f"{token}_{i}" for i in range(1, vectors))]


def expand(prompt: str, tokens: Mapping[str, torch.Tensor]) -> str:
    """`prompt` with each multi-vector token written out as its sub-tokens (diffusers' `maybe_convert_prompt`)."""
    for token, vectors in tokens.items():
        if len(vectors) > 1 and token in prompt:
            prompt = prompt.replace(token, " ".join(sub_tokens(token, len(vectors))))
    return prompt


# files ----------------------------------------------------------------------------------------------


def embedding_from_tensors(tensors: Mapping[str, torch.Tensor]) -> tuple[str | None, torch.Tensor]:
    """(token named in the file or None, vectors (N, D)) from a diffusers or A1111 embedding state dict."""
    if len(tensors) != 1:
        raise InvalidInput(
            f"not a textual-inversion embedding: expected one tensor, found keys {', '.join(sorted(tensors)[:5])}"
        )
    [(key, vectors)] = tensors.items()
    if vectors.ndim == 1:
        vectors = vectors[None]
    if vectors.ndim != 2 or not vectors.is_floating_point() or not 1 <= len(vectors) <= 75:
        raise InvalidInput(f"not a textual-inversion embedding: tensor {key!r} has shape {tuple(vectors.shape)}")
    return (None if key in _A1111_KEYS else key), vectors


def read_embedding(path: str | os.PathLike) -> tuple[str | None, torch.Tensor]:
    """Read an embedding file (safetensors only: pickled .pt/.bin embeddings can run code)."""
    tensors = read_tensors(path, "embedding")
    return embedding_from_tensors(tensors)


def write_embedding(path: str | os.PathLike, token: str, vectors: torch.Tensor) -> Path:
    """Write `learned_embeds.safetensors` layout: {token: (N, D)}, atomically."""
    return write_tensors(path, {token: vectors})


# encoding with extra tokens -----------------------------------------------------------------------------


class _ExtraRows(nn.Module):
    """A token-embedding table extended by rows for ids from `first` on, without copying the table."""

    def __init__(self, base: nn.Embedding, first: int, rows: torch.Tensor) -> None:
        super().__init__()
        self.base, self.first, self.rows = base, first, rows

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.base(ids.clamp(max=self.base.num_embeddings - 1))
        extra = ids >= self.first
        picked = self.rows[(ids - self.first).clamp(0, len(self.rows) - 1)].to(out.dtype)
        return torch.where(extra[..., None], picked, out)


class TokenEncoder:
    """Encodes captions with extra tokens, on private copies of the model's tokenizer and text encoder.

    `trainable` names the one token whose vectors are a parameter (`rows`); the others are fixed.
    """

    def __init__(self, model: ModelBundle, tokens: Mapping[str, torch.Tensor], trainable: str | None = None) -> None:
        self.model = model
        self.tokens = {name: vectors.detach().float() for name, vectors in tokens.items()}
        self.tokenizer = copy.deepcopy(model.tokenizer)
        self.text_encoder = copy.deepcopy(model.text_encoder).float()
        first = len(self.tokenizer)
        names = [sub for token, vectors in self.tokens.items() for sub in sub_tokens(token, len(vectors))]
        if self.tokenizer.add_tokens(names) != len(names):
            taken = [n for n in names if n in model.tokenizer.get_vocab()]
            raise InvalidInput(f"token {taken[0]!r} is already a word of this model's vocabulary; choose another")
        rows, offset, self.rows = [], 0, None
        for token, vectors in self.tokens.items():
            if token == trainable:
                self.rows = nn.Parameter(vectors.clone())
                self.offset = offset
            rows.append(vectors)
            offset += len(vectors)
        self._fixed = torch.cat(rows) if rows else None
        if self._fixed is not None:
            base = self.text_encoder.get_input_embeddings()
            self._table = _ExtraRows(base, first, self._fixed)
            self.text_encoder.set_input_embeddings(self._table)

    def trained_vectors(self) -> torch.Tensor:
        return self.rows.detach().clone()

    def __call__(self, captions: Sequence[str]) -> torch.Tensor:
        if self.rows is not None:  # splice the live parameter into the fixed rows (keeps the graph)
            n = len(self.rows)
            fixed = self._fixed
            self._table.rows = torch.cat([fixed[: self.offset], self.rows, fixed[self.offset + n :]])
        tok = self.tokenizer
        texts = [expand(c, self.tokens) for c in captions]
        batch = tok(texts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
        device = self.model.device
        use_mask = getattr(self.text_encoder.config, "use_attention_mask", False)
        mask = batch.attention_mask.to(device) if use_mask else None
        return self.text_encoder(batch.input_ids.to(device), attention_mask=mask)[0]


def initial_vectors(model: ModelBundle, vectors: int, init: str | None = None) -> torch.Tensor:
    """Start from the mean embedding of `init`'s tokens (None: of the whole vocabulary), one row per vector."""
    table = model.text_encoder.get_input_embeddings().weight.detach().float()
    if init:
        ids = model.tokenizer(init, add_special_tokens=False).input_ids
        if not ids:
            raise InvalidInput(f"the init text {init!r} has no tokens")
        start = table[ids].mean(0)
    else:
        start = table[: len(model.tokenizer)].mean(0)
    return start.expand(vectors, -1).clone().cpu()


def train_token(
    model: ModelBundle,
    data: TrainingSet,
    token: str,
    *,
    vectors: int = 4,
    init: str | None = None,
    others: Mapping[str, torch.Tensor] | None = None,
    steps: int = 300,
    lr: float = 2e-2,
    batch: int = 4,
    seed: int = 0,
    progress: bool = False,
) -> tuple[torch.Tensor, FitResult]:
    """Learn the `vectors` embeddings of `token` from `data` (captions contain the token); returns (N, D).

    `others` are tokens already known (e.g. another character's in the same captions), held fixed.
    """
    check_token(token)
    if not 1 <= vectors <= 16:
        raise InvalidInput(f"vectors must be between 1 and 16, got {vectors}")
    if not any(token in c for c in data.captions):
        raise InvalidInput(f"no caption mentions {token}; the token would learn nothing")
    tokens = {**dict(others or {}), token: initial_vectors(model, vectors, init)}
    encoder = TokenEncoder(model, tokens, trainable=token)
    encoder.text_encoder.requires_grad_(False)
    result = fit(
        model, data, [encoder.rows], encoder, lambda: {token: encoder.trained_vectors()},
        steps=steps, lr=lr, batch=batch, seed=seed, progress=progress, desc=f"learn {token}",
    )  # fmt: skip
    return result.state[token], result
