"""Resumable training state in safetensors + JSON (no pickle): weights, EMA shadows, optimizer moments, RNG.

A checkpoint is a directory replaced atomically (written beside, then renamed), so a run killed
mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from charforge.errors import NotFound


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into flat tensors and the JSON-able rest."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, slots in sd["state"].items():
        for key, value in slots.items():
            tensors[f"{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, {"param_groups": sd["param_groups"]}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(folder: Path, tensors: dict[str, dict[str, torch.Tensor]], meta: dict[str, Any]) -> None:
    """`tensors` maps a file stem to its named tensors; `meta` goes to state.json."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for stem, named in tensors.items():
        save_file({k: v.detach().contiguous().cpu() for k, v in named.items()}, str(tmp / f"{stem}.safetensors"))
    (tmp / "state.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        if old.exists():
            shutil.rmtree(old)
        folder.rename(old)
    tmp.rename(folder)
    if old.exists():
        shutil.rmtree(old)


def load_checkpoint(folder: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    folder = Path(folder)
    if not (folder / "state.json").is_file():
        raise NotFound(f"no checkpoint in {folder}")
    meta = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    tensors = {p.stem: load_file(str(p)) for p in folder.glob("*.safetensors")}
    return tensors, meta
