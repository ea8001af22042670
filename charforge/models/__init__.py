"""Diffusers folders of the models charforge trains itself and ships (package data, loaded offline),
and the content hash of a model's weights on disk.

The hashing lives here, free of torch, because a cache lookup needs the hash of the model in use and
must not pay for importing (let alone loading) the model: `charforge.engine.loading` uses the same
functions, so the hash a lookup computes is the one `load_model` reports.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

from charforge.files import RACY_NS, file_sha256

HERE = Path(__file__).resolve().parent  # resolved once: a cache lookup asks for the default model's path per request
WEIGHT_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")  # the last only in SDXL


def default_model_path() -> Path:
    """The portrait mini model shipped inside the package (used when no --model is given)."""
    return HERE / "portrait-mini"


def fast_model_path() -> Path:
    """The few-step student of the portrait model (4 LCM steps, guidance as an input): `generate --fast`."""
    return Path(__file__).resolve().parent / "portrait-mini-fast"


def student_path(ref: str | os.PathLike | None) -> Path | None:
    """The installed few-step student of the model `ref` (None: the default model), or None if it has none.

    The shipped portrait model's student is the shipped portrait-mini-fast; no other model has one yet.
    """
    ref = resolve_model_ref(ref)
    if ref is not None and Path(ref).expanduser().resolve() != default_model_path():
        return None
    folder = fast_model_path()
    return folder if (folder / "model_index.json").is_file() else None


def default_bgm_model_path() -> Path:
    """The spectrogram mini model shipped inside the package (the default for music)."""
    return HERE / "bgm-mini"


SHIPPED_MODELS = {
    "charforge-mini": "portrait-mini",
    "charforge-mini-fast": "portrait-mini-fast",
    "charforge-mini-bgm": "bgm-mini",
}
"""Names of the shipped models, usable wherever a model reference is (`load_model("charforge-mini")`,
`--model charforge-mini`, a card's `model`): the same reference works from any directory, where the
folder path would be relative to the checkout."""


def resolve_model_ref(ref: str | os.PathLike | None) -> str | os.PathLike | None:
    """A shipped model's name -> its folder inside the package; anything else unchanged."""
    if isinstance(ref, str) and ref in SHIPPED_MODELS:
        return HERE / SHIPPED_MODELS[ref]
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


def check_model_ref(ref: str | None) -> None:
    """ModelLoadError unless `ref` can be a model: None (the shipped one), a readable diffusers folder or
    .safetensors file, or a hub id `owner/name`. Checked before a command writes anything that names
    the model; a hub id can only be checked by loading it."""
    from charforge.errors import ModelLoadError

    if ref is None:
        return
    path = Path(ref).expanduser()
    if path.is_dir():
        index = path / "model_index.json"
        if not index.is_file() or not os.access(index, os.R_OK):
            raise ModelLoadError(f"model folder {path} has no readable model_index.json (expected a diffusers folder)")
        return
    if path.suffix in (".ckpt", ".pt", ".pth", ".bin"):
        raise ModelLoadError(f"refusing {path.name}: pickle checkpoints are unsafe; convert it to .safetensors")
    if path.suffix == ".safetensors" or path.exists() or ref.startswith((".", "/", "~")) or ref.count("/") != 1:
        if path.is_file() and path.suffix == ".safetensors" and os.access(path, os.R_OK):
            return
        raise ModelLoadError(f"model not found: {ref} (pass a diffusers folder, a .safetensors file or a hub id)")


def hash_folder(path: Path) -> str:
    return hash_files(_weight_files(path), path)


_LISTINGS: dict[str, tuple[tuple[int | None, ...], list[Path]]] = {}


def _weight_files(path: Path) -> list[Path]:
    """The folder's weight files, sorted; the listing is cached per components' directory mtimes
    (adding, removing or renaming a file changes its directory's mtime), so a cache lookup that asks
    for the model's hash on every request pays a few `stat`s, not a directory scan."""
    dirs = [path / name for name in WEIGHT_COMPONENTS]
    stamp = tuple(_mtime(d) for d in dirs)
    key = os.path.abspath(path)
    hit = _LISTINGS.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    files = sorted(f for d in dirs for f in d.glob("*.safetensors"))
    if all(time.time_ns() - m > RACY_NS for m in stamp if m is not None):
        _LISTINGS[key] = (stamp, files)
    return files


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def hash_files(files: list[Path], root: Path) -> str:
    """sha256 over (relative name, bytes) of each weight file; a file is read again only when it changed
    (`file_sha256` keeps digests per inode, size and mtime)."""
    total = hashlib.sha256()
    for file in files:
        digest = file_sha256(file)
        if digest is None:
            raise OSError(f"cannot read the weight file {file}")
        total.update(file.relative_to(root).as_posix().encode())
        total.update(digest.encode())
    return total.hexdigest()


VOCABULARY_FILE = "vocabulary.json"
"""Beside model_index.json, `{"words": [...]}`: the only words a model was trained on. A model with a
closed vocabulary (the mini models: captions from a renderer) draws any other word as noise, so a
prompt outside it is warned about; a model without the file (Stable Diffusion) is not checked."""

_WORD = re.compile(r"[^\W\d_]+")
_ADDED_TOKEN = re.compile(r"<[^<>\s]+>")  # a textual-inversion token such as <mira>: not a word of the model's


def prompt_words(prompt: str) -> list[str]:
    """The words of a prompt as a vocabulary check sees them: lower-case runs of letters, in order
    (emphasis weights and added `<tokens>` are not words)."""
    return _WORD.findall(_ADDED_TOKEN.sub(" ", prompt.lower()))


def read_vocabulary(folder: str | os.PathLike) -> frozenset[str] | None:
    """The words a model folder declares (None: no declaration, an open vocabulary)."""
    path = Path(folder) / VOCABULARY_FILE
    if not path.is_file():
        return None
    return frozenset(json.loads(path.read_text(encoding="utf-8"))["words"])


def write_vocabulary(folder: str | os.PathLike, words: Iterable[str]) -> Path:
    """Declare a model's vocabulary: the letter words of `words` (e.g. a recipe's caption words)."""
    from charforge.files import atomic_write

    kept = sorted({w for word in words for w in prompt_words(word)})
    path = Path(folder) / VOCABULARY_FILE
    atomic_write(path, (json.dumps({"words": kept}, indent=1) + "\n").encode())
    return path


def unknown_words(prompt: str, vocabulary: frozenset[str]) -> list[str]:
    """The words of `prompt` outside `vocabulary`, each once, in order."""
    return list(dict.fromkeys(w for w in prompt_words(prompt) if w not in vocabulary))
