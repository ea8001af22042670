"""Models loaded once per process, shared by every verb that draws (pictures, music).

Keyed by where a model comes from and the hash of its weights on disk, so a retrained model in the
same folder is loaded again instead of served stale. At most `MAX_MODELS` stay in memory (a
character's portrait model and its BGM model); the least recently used goes first.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

from charforge.engine.loading import (
    ModelBundle,
    default_model_path,
    load_model,
    resolve_model_ref,
    weights_hash,
)

MAX_MODELS = 2

_LOADED: OrderedDict[tuple[str, str | None], ModelBundle] = OrderedDict()


def cached_model(ref: str | os.PathLike | None = None) -> ModelBundle:
    """`load_model(ref)` (None: the shipped portrait model), loaded once while its weights stay the same."""
    ref = resolve_model_ref(ref)
    source = str(default_model_path() if ref is None else Path(ref) if isinstance(ref, os.PathLike) else ref)
    key = (source, weights_hash(ref))
    if key in _LOADED:
        _LOADED.move_to_end(key)
        return _LOADED[key]
    for stale in [k for k in _LOADED if k[0] == source]:  # the same model with other weights
        del _LOADED[stale]
    while len(_LOADED) >= MAX_MODELS:
        _LOADED.popitem(last=False)
    _LOADED[key] = model = load_model(ref)
    return model
