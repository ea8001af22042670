"""The renderer as a training source: portrait i of a seeded list, drawn on demand."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from charforge.recipes.portrait_mini.population import FACE_MIX, sample_portraits
from charforge.recipes.portrait_mini.render import Portrait, render


class PortraitSource:
    """`source[i]` -> (3x64x64 tensor in [-1, 1], caption) for training combinations only.

    Attributes are drawn up front (cheap); pixels are rendered lazily (about 3 ms each), so a large
    source costs no memory.
    """

    def __init__(
        self,
        seed: int,
        count: int,
        *,
        held_out: bool | None = False,
        min_intensity: float = 0.3,
        mix: Sequence[float] = FACE_MIX,
        emphasis: Mapping[str, float] | None = None,
    ) -> None:
        self.portraits: list[Portrait] = list(
            sample_portraits(seed, count, held_out=held_out, min_intensity=min_intensity, mix=mix, emphasis=emphasis)
        )
        # rendered pixels are kept (12 KB each): both training phases revisit every image
        self._pixels = np.zeros((count, 64, 64, 3), dtype=np.uint8)
        self._done = np.zeros(count, dtype=bool)

    def __len__(self) -> int:
        return len(self.portraits)

    def caption(self, index: int) -> str:
        return self.portraits[index].caption()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        p = self.portraits[index]
        if not self._done[index]:
            self._pixels[index] = render(p)[0]
            self._done[index] = True
        return image_to_tensor(self._pixels[index]), p.caption()


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float() / 127.5 - 1.0
