"""Recording attention maps while the loop runs, and rendering a word's map as a picture.

People debug an edit by looking at where a word attends ("does 'smiling' land on the mouth?"), and
local blend builds its mask from the same maps. Maps are averaged over heads when recorded and kept
only at low resolutions: a self-attention map at 64x64 latents is 4096x4096 per head, which would
not fit in memory over fifty steps, while the 32x32-and-below maps carry the layout anyway.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from charforge.engine.attention.control import AttentionControl, Controller, Layer, RowMap
from charforge.engine.attention.tokens import word_columns
from charforge.engine.hooks import StepContext
from charforge.errors import InvalidInput


@dataclass(frozen=True)
class Record:
    """Head-averaged maps of one layer at one step, one (queries, keys) tensor per branch."""

    step: int
    layer: Layer
    maps: dict[int, torch.Tensor]


class AttentionStore(Controller):
    """Records conditional-row attention maps per layer, place (down/mid/up) and step.

    `cross_max_tokens` / `self_max_tokens` bound the query count (h*w) of recorded layers; 0 turns a
    kind off. With `keep_steps=False` only running sums per layer are kept (what local blend needs),
    otherwise every step's maps are kept as `records` too.
    """

    stage = 0

    def __init__(self, cross_max_tokens: int = 32 * 32, self_max_tokens: int = 16 * 16, keep_steps: bool = True):
        self.cross_max_tokens = cross_max_tokens
        self.self_max_tokens = self_max_tokens
        self.keep_steps = keep_steps
        self.latent_shape: tuple[int, int] = (0, 0)
        self.reset()

    def reset(self) -> None:
        self.records: list[Record] = []
        self.sums: dict[tuple[str, int], torch.Tensor] = {}
        self.counts: dict[tuple[str, int], int] = defaultdict(int)
        self.layers: dict[str, Layer] = {}

    def begin(self, control: AttentionControl, ctx: StepContext) -> None:
        self.reset()
        self.latent_shape = control.latent_shape

    def wants_probs(self, layer: Layer, step: int, layout: RowMap, tokens: int) -> bool:
        limit = self.cross_max_tokens if layer.is_cross else self.self_max_tokens
        return tokens <= limit

    def edit_probs(self, layer: Layer, step: int, layout: RowMap, probs: torch.Tensor) -> torch.Tensor:
        maps = {branch: probs[row].mean(dim=0).detach().float() for row, branch in layout.cond_rows()}
        self.layers[layer.name] = layer
        for branch, value in maps.items():
            key = (layer.name, branch)
            self.sums[key] = value.clone() if key not in self.sums else self.sums[key] + value
            self.counts[key] += 1
        if self.keep_steps:
            self.records.append(Record(step, layer, maps))
        return probs

    def grid(self, tokens: int) -> tuple[int, int]:
        """(h, w) of a map with `tokens` queries, from the latent shape the call ran at."""
        height, width = self.latent_shape
        factor = math.sqrt(height * width / tokens)
        return max(1, round(height / factor)), max(1, round(width / factor))

    def average_cross(
        self, branch: int, tokens: int | None = None, places: tuple[str, ...] = ("down", "mid", "up")
    ) -> torch.Tensor:
        """Cross-attention averaged over steps, heads and layers: (h, w, keys) at `tokens` queries.

        Layers at other resolutions are resized to the chosen one; by default that is the largest
        recorded resolution, where a word's region is sharpest.
        """
        keys = [
            (name, b)
            for (name, b) in self.sums
            if b == branch and self.layers[name].is_cross and self.layers[name].place in places
        ]
        if not keys:
            raise InvalidInput(f"no cross-attention was recorded for branch {branch}")
        if tokens is None:
            tokens = max(self.sums[k].shape[0] for k in keys)
        h, w = self.grid(tokens)
        total = None
        for key in keys:
            mean = self.sums[key] / self.counts[key]
            gh, gw = self.grid(mean.shape[0])
            spatial = mean.T.reshape(1, -1, gh, gw)
            if (gh, gw) != (h, w):
                spatial = F.interpolate(spatial, size=(h, w), mode="bilinear", align_corners=False)
            total = spatial if total is None else total + spatial
        return (total[0] / len(keys)).permute(1, 2, 0)

    def word_map(self, tokenizer: Any, prompt: str, word: str, branch: int = 0) -> torch.Tensor:
        """(h, w) map in [0, 1] of where `word` of `prompt` attends, averaged over its tokens."""
        columns = word_columns(tokenizer, prompt, word)
        maps = self.average_cross(branch)[..., columns].mean(dim=-1)
        return maps / maps.max().clamp_min(1e-12)


def render_map(heat: torch.Tensor, size: tuple[int, int], image: Image.Image | None = None) -> Image.Image:
    """A heat map (h, w in [0, 1]) as an RGB picture of `size` (w, h), laid over `image` if given.

    Cells are upsampled bilinearly; the colour ramp goes black -> red -> yellow -> white so the
    strongest region stands out even printed in grey.
    """
    width, height = size
    grid = F.interpolate(heat[None, None].float(), size=(height, width), mode="bilinear", align_corners=False)
    value = grid[0, 0].clamp(0, 1).numpy()
    rgb = np.stack([np.clip(value * 3, 0, 1), np.clip(value * 3 - 1, 0, 1), np.clip(value * 3 - 2, 0, 1)], axis=-1)
    if image is not None:
        base = np.asarray(image.convert("RGB").resize((width, height)), dtype=np.float32) / 255.0
        rgb = 0.45 * base + 0.55 * rgb
    return Image.fromarray((rgb * 255).round().astype(np.uint8))
