"""Reading and writing adapter files: safetensors only, since pickled embeddings and LoRAs can run code."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from charforge.errors import InvalidInput, NotFound
from charforge.files import atomic_write


def read_tensors(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a `.safetensors` file holding `what` ("embedding", "LoRA"), or one clear error."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise InvalidInput(f"refusing {path.name}: only .safetensors {what}s are read (pickle files can run code)")
    if not path.is_file():
        raise NotFound(f"{what} file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise InvalidInput(f"{path.name} is not a readable safetensors file ({exc})") from None


def write_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> Path:
    """Write `tensors` as safetensors through charforge's one atomic write."""
    path = Path(path)
    atomic_write(path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))
    return path
