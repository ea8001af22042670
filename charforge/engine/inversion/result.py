"""The result of an inversion, and how it is stored: safetensors for the tensors, JSON for the rest.

One format serves a folder on disk (`save_pretrained`/`from_pretrained`, the way diffusers stores
models) and a database row (`to_bytes`/`from_bytes`, the blob plus its metadata with a sha256).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from charforge.errors import IntegrityError, NotFound
from charforge.files import atomic_write

FORMAT_VERSION = 1
TENSORS_FILE, META_FILE = "inversion.safetensors", "inversion.json"


@dataclass
class InversionResult:
    """Everything needed to redraw an inverted image: trajectory, the method's per-step tensors, settings.

    `trajectory` is in sampling order: row 0 is x_T (the starting noise), row i the latent before
    sampling step i, the last row the clean image latent. `step_tensors` holds what the method
    fitted along it, one row per step (null-text's `uncond_embeddings` (steps, L, D), direct
    inversion's `offsets` (steps, C, h, w)); the method named by `method` knows how to replay them.
    """

    method: str
    prompt: str
    negative_prompt: str
    steps: int
    guidance: float
    model_hash: str
    width: int
    height: int
    timesteps: list[int]
    trajectory: torch.Tensor
    step_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def x_T(self) -> torch.Tensor:  # noqa: N802 - the paper's name
        return self.trajectory[:1]

    @property
    def clean_latent(self) -> torch.Tensor:
        return self.trajectory[-1:]

    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "method": self.method,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "steps": self.steps,
            "guidance": self.guidance,
            "model_hash": self.model_hash,
            "width": self.width,
            "height": self.height,
            "timesteps": list(self.timesteps),
            "extra": self.extra,
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"trajectory": self.trajectory, **self.step_tensors}
        return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in out.items()}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> InversionResult:
        """Rebuild from `tensors()` and `metadata()` (as a store keeps them), checking both.

        The method name is not looked up here: a method registered later (or no longer) is named
        by the error of the replay that needs it."""
        method = meta.get("method")
        if meta.get("format") != FORMAT_VERSION or not isinstance(method, str) or not method:
            raise IntegrityError(f"unsupported inversion metadata (format {meta.get('format')}, method {method})")
        if "trajectory" not in tensors:
            raise IntegrityError("inversion tensors have no trajectory")
        return cls(
            method=meta["method"], prompt=meta["prompt"], negative_prompt=meta.get("negative_prompt", ""),
            steps=int(meta["steps"]), guidance=float(meta["guidance"]), model_hash=meta["model_hash"],
            width=int(meta["width"]), height=int(meta["height"]), timesteps=[int(t) for t in meta["timesteps"]],
            trajectory=tensors["trajectory"], step_tensors={k: v for k, v in tensors.items() if k != "trajectory"},
            extra=dict(meta.get("extra", {})),
        )  # fmt: skip

    def to_bytes(self) -> tuple[bytes, dict[str, Any]]:
        """(safetensors blob, JSON-able metadata with the blob's sha256), e.g. for a database row."""
        blob = save_tensors(self.tensors())
        return blob, {**self.metadata(), "sha256": hashlib.sha256(blob).hexdigest()}

    @classmethod
    def from_bytes(cls, blob: bytes, meta: Mapping[str, Any]) -> InversionResult:
        expected = meta.get("sha256")
        if expected is not None and hashlib.sha256(blob).hexdigest() != expected:
            raise IntegrityError("inversion tensors do not match their recorded sha256")
        return cls.from_tensors(load_tensors(blob), meta)

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write inversion.safetensors + inversion.json into `folder` (each atomically)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        blob, meta = self.to_bytes()
        atomic_write(folder / TENSORS_FILE, blob)
        atomic_write(folder / META_FILE, json.dumps(meta, indent=2, ensure_ascii=False).encode())
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> InversionResult:
        folder = Path(folder)
        tensors, meta = folder / TENSORS_FILE, folder / META_FILE
        if not tensors.is_file() or not meta.is_file():
            raise NotFound(f"no inversion in {folder} (expected {TENSORS_FILE} and {META_FILE})")
        try:
            metadata = json.loads(meta.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise IntegrityError(f"{meta} is not valid JSON: {exc}") from exc
        return cls.from_bytes(tensors.read_bytes(), metadata)
