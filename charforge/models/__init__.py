"""Diffusers folders of the models charforge trains itself and ships (package data, loaded offline),
and the content hash of a model's weights on disk.

The hashing lives here, free of torch, because a cache lookup needs the hash of the model in use and
must not pay for importing (let alone loading) the model: `charforge.engine.loading` uses the same
functions, so the hash a lookup computes is the one `load_model` reports.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

WEIGHT_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")  # the last only in SDXL
_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def default_model_path() -> Path:
    """The portrait mini model shipped inside the package (used when no --model is given)."""
    return Path(__file__).resolve().parent / "portrait-mini"


def default_bgm_model_path() -> Path:
    """The spectrogram mini model shipped inside the package (the default for music)."""
    return Path(__file__).resolve().parent / "bgm-mini"


SHIPPED_MODELS = {"charforge-mini": "portrait-mini", "charforge-mini-bgm": "bgm-mini"}
"""Names of the shipped models, usable wherever a model reference is (`load_model("charforge-mini")`,
`--model charforge-mini`, a card's `model`): the same reference works from any directory, where the
folder path would be relative to the checkout."""


def resolve_model_ref(ref: str | os.PathLike | None) -> str | os.PathLike | None:
    """A shipped model's name -> its folder inside the package; anything else unchanged."""
    if isinstance(ref, str) and ref in SHIPPED_MODELS:
        return Path(__file__).resolve().parent / SHIPPED_MODELS[ref]
    return ref


def weights_hash(ref: str | os.PathLike | None = None) -> str | None:
    """The `model_hash` `load_model(ref)` would report, without loading: for a local diffusers folder or
    .safetensors file (None: the default model; or a name of `SHIPPED_MODELS`); None for anything else
    (hub ids, built pipelines).

    Cache keys need the hash of the model in use, and a cache hit must not pay for loading it.
    """
    ref = resolve_model_ref(ref)
    if ref is None:
        path = default_model_path()
    elif isinstance(ref, (str, os.PathLike)):
        path = Path(ref).expanduser()
    else:
        return None
    if path.is_dir() and (path / "model_index.json").is_file():
        return hash_folder(path)
    if path.suffix == ".safetensors" and path.is_file():
        return hash_files([path], path.parent)
    return None


def hash_folder(path: Path) -> str:
    files = sorted(f for name in WEIGHT_COMPONENTS for f in (path / name).glob("*.safetensors"))
    return hash_files(files, path)


def hash_files(files: list[Path], root: Path) -> str:
    """sha256 over (relative name, bytes) of each weight file; cached per (path, size, mtime)."""
    total = hashlib.sha256()
    for file in files:
        stat = file.stat()
        key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _HASH_CACHE:
            digest = hashlib.sha256()
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
            _HASH_CACHE[key] = digest.hexdigest()
        total.update(file.relative_to(root).as_posix().encode())
        total.update(_HASH_CACHE[key].encode())
    return total.hexdigest()
