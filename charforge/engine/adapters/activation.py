"""Wearing a look: a character's tokens and LoRA active in a shared model, and gone without a trace.

Several characters share one loaded model, so a look is put on before a render and taken off before
anything else renders. Putting on goes through diffusers' own loaders on a pipeline over the model's
modules (`load_textual_inversion`, `load_lora_weights`, `set_adapters` for the strength). Taking off
does not use `unload_textual_inversion`, which rebuilds the embedding table and can leave the `<tok>_1`
... sub-tokens of a multi-vector token behind: the tokenizer is worn as a copy and the original object
put back, and the text encoder's original embedding tensor is put back in place, so every sub-token
goes and the table is the same tensor as before. LoRA layers are removed by `unload_lora_weights`,
which puts the original linear layers back (weights are never fused, so they are never changed).
The result: a render after taking a look off is bit-identical to one on a model that never wore it.

`wear(model, look)` switches lazily: wearing the look already worn costs nothing, so consecutive
renders of one character load once. `wearing(model, look)` is the scoped form for engine users: it
puts back whatever was worn before when the block ends.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from charforge.canonical import canonical_hash
from charforge.engine.adapters.pipeline import diffusers_pipeline
from charforge.engine.adapters.textual_inversion import check_token
from charforge.engine.loading import ModelBundle
from charforge.errors import InvalidInput

log = logging.getLogger(__name__)

ADAPTER = "charforge_look"


@dataclass(frozen=True)
class Look:
    """Tokens (token -> (N, D) vectors) and a LoRA (tensors in any layout diffusers loads) at a strength.

    `key` names the content: two looks with the same key are the same look (no reload between them).
    """

    tokens: Mapping[str, torch.Tensor] = field(default_factory=dict)
    lora: Mapping[str, torch.Tensor] | None = None
    strength: float = 1.0
    key: str = ""

    def __post_init__(self) -> None:
        for token in self.tokens:
            check_token(token)
        if not 0.0 <= self.strength <= 4.0:
            raise InvalidInput(f"LoRA strength must be between 0 and 4, got {self.strength}")
        if not self.key:
            object.__setattr__(self, "key", look_key(self.tokens, self.lora, self.strength))

    @property
    def empty(self) -> bool:
        return not self.tokens and not self.lora


def look_key(tokens: Mapping[str, torch.Tensor], lora: Mapping[str, torch.Tensor] | None, strength: float) -> str:
    """A content hash of a look (tensor bytes, names, strength)."""

    def digest(tensors: Mapping[str, torch.Tensor]) -> dict[str, str]:
        raw = {name: t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy() for name, t in tensors.items()}
        return {name: hashlib.sha256(data.tobytes()).hexdigest() for name, data in sorted(raw.items())}

    return canonical_hash({"tokens": digest(tokens), "lora": digest(lora or {}), "strength": float(strength)})


@dataclass
class _Worn:
    """What a model wears now, and what to put back when it is taken off."""

    key: str | None = None
    look: Look | None = None
    tokenizer: Any = None
    embedding: Any = None
    weight: torch.Tensor | None = None
    rows: int = 0
    vocab_size: int = 0
    lora: bool = False


_WORN: dict[int, _Worn] = {}


def worn_key(model: ModelBundle) -> str | None:
    """The key of the look `model` wears now (None: none)."""
    state = _WORN.get(id(model))
    return None if state is None else state.key


def wear(model: ModelBundle, look: Look | None) -> None:
    """Make `look` the one `model` wears (None or an empty look: none); nothing happens if it already does."""
    look = None if look is None or look.empty else look
    if id(model) not in _WORN:
        weakref.finalize(model, _WORN.pop, id(model), None)
    state = _WORN.setdefault(id(model), _Worn())
    if state.key == (None if look is None else look.key):
        return
    _take_off(model, state)
    if look is None:
        return
    try:
        _put_on(model, look, state)
    except Exception as exc:
        _take_off(model, state)
        if isinstance(exc, InvalidInput):
            raise
        raise InvalidInput(f"this look does not fit the model: {str(exc).splitlines()[0][:200]}") from None
    state.key, state.look = look.key, look
    log.info("wearing look %s (%d tokens, LoRA: %s)", look.key[:10], len(look.tokens), look.lora is not None)


@contextmanager
def wearing(model: ModelBundle, look: Look | None) -> Iterator[ModelBundle]:
    """`model` wearing `look` inside the block; the previous look (usually none) is worn again after it."""
    state = _WORN.get(id(model))
    previous = None if state is None else state.look
    wear(model, look)
    try:
        yield model
    finally:
        wear(model, previous)


def _put_on(model: ModelBundle, look: Look, state: _Worn) -> None:
    pipe = diffusers_pipeline(model)
    if look.tokens:
        encoder = model.text_encoder
        table = encoder.get_input_embeddings()
        state.tokenizer, state.embedding, state.weight = model.tokenizer, table, table.weight.data
        state.rows, state.vocab_size = table.num_embeddings, encoder.config.vocab_size
        model.tokenizer = copy.deepcopy(model.tokenizer)
        pipe.tokenizer = model.tokenizer
        names = list(look.tokens)
        taken = [name for name in names if name in state.tokenizer.get_vocab()]
        if taken:
            raise InvalidInput(f"token {taken[0]!r} is already a word of this model's vocabulary")
        dicts = [{name: look.tokens[name].to(state.weight.dtype)} for name in names]
        pipe.load_textual_inversion(dicts, token=names, tokenizer=model.tokenizer, text_encoder=encoder)
    if look.lora:
        state.lora = True
        pipe.load_lora_weights({k: v.clone() for k, v in look.lora.items()}, adapter_name=ADAPTER)
        pipe.set_adapters([ADAPTER], adapter_weights=[look.strength])


def _take_off(model: ModelBundle, state: _Worn) -> None:
    if state.lora:
        diffusers_pipeline(model).unload_lora_weights()
        state.lora = False
    if state.tokenizer is not None:
        encoder = model.text_encoder
        state.embedding.weight.data = state.weight
        state.embedding.num_embeddings = state.rows
        encoder.set_input_embeddings(state.embedding)
        encoder.config.vocab_size = state.vocab_size
        model.tokenizer = state.tokenizer
        diffusers_pipeline(model)  # follows the bundle's tokenizer
        state.tokenizer = state.embedding = state.weight = None
    state.key = state.look = None
