"""Tensors <-> safetensors bytes with a sha256, so identity data in SQLite is checked on every read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from charforge.errors import IntegrityError, InvalidInput
from charforge.paths import sha256_bytes

if TYPE_CHECKING:
    import torch


def encode_tensors(tensors: Mapping[str, torch.Tensor]) -> tuple[bytes, str]:
    """safetensors bytes of `tensors` and their sha256."""
    import torch
    from safetensors.torch import save

    if not tensors:
        raise InvalidInput("an identity artifact needs at least one tensor")
    for key, value in tensors.items():
        if not isinstance(key, str) or not key:
            raise InvalidInput(f"tensor names must be non-empty strings, got {key!r}")
        if not isinstance(value, torch.Tensor):
            raise InvalidInput(f"{key!r} is a {type(value).__name__}, not a torch.Tensor")
    # safetensors wants contiguous CPU tensors that do not share memory.
    data = save({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()})
    return data, sha256_bytes(data)


def decode_tensors(data: bytes, expected_sha256: str, what: str) -> dict[str, torch.Tensor]:
    """Tensors from safetensors bytes after checking their sha256; IntegrityError on any mismatch."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    actual = sha256_bytes(data)
    if actual != expected_sha256:
        raise IntegrityError(
            f"{what} is corrupted: sha256 {actual[:12]}... does not match the stored {expected_sha256[:12]}..."
        )
    try:
        return load(data)
    except (SafetensorError, ValueError) as exc:  # unreachable unless the sha was stored for bad bytes
        raise IntegrityError(f"{what} is not valid safetensors data: {exc}") from None
