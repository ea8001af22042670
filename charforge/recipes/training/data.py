"""What the trainer consumes: an indexable source of (image tensor, caption) pairs.

A source is indexed, not iterated, so a run can resume at any point with the same random draws and
so procedural sources can render lazily (no copy of the dataset in memory or on disk).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class SampleSource(Protocol):
    """`source[i]` -> (float tensor C x H x W in [-1, 1], caption). Every item has the same shape."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]: ...


def captions(source: SampleSource) -> list[str]:
    """All captions; sources that know them without rendering may offer `caption(i)` to skip the images."""
    get = getattr(source, "caption", None)
    return [get(i) if get else source[i][1] for i in range(len(source))]


def batch(source: SampleSource, indices: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
    items = [source[int(i)] for i in indices]
    return torch.stack([img for img, _ in items]), [cap for _, cap in items]
