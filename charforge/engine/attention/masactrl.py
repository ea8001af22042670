"""MasaCtrl (Cao et al. 2023): mutual self-attention for non-rigid edits (pose, head tilt, gesture).

Prompt-to-Prompt keeps the source's attention maps, which also freezes its geometry. MasaCtrl lets
the target lay out its own structure in the first steps, then makes the target's self-attention
queries read the source's keys and values, so appearance (face, hair, outfit) is copied from the
source wherever the new pose puts it. Only decoder-side layers from `start_layer` and steps from
`start_step` are changed: early steps and encoder layers decide the layout and must stay free.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from charforge.engine.attention.control import AttentionControl, Controller, Layer, RowMap
from charforge.engine.hooks import StepContext

# The paper's defaults on SD 1.x: step 4 of 50, self-attention layer 10 of 16.
PAPER_START_STEP, PAPER_START_LAYER, PAPER_LAYERS = 4, 10, 16


class MutualSelfAttention(Controller):
    """Target rows attend to the source row's keys/values at self-attention layers.

    `start_layer` counts self-attention layers in execution order; None scales the paper's 10-of-16
    to the UNet at hand. `mask` ((h, w) in latent cells, 1 = foreground, the same for source and
    target) restricts the copy: foreground queries read only the source foreground and background
    queries only its background, so a character's appearance does not leak into the scenery.
    Each guidance half uses its own source row; when the source's unconditional row is not computed
    (direct inversion) the conditional one stands in, since both see the same image.
    """

    def __init__(
        self, start_step: int = PAPER_START_STEP, start_layer: int | None = None, mask: torch.Tensor | None = None
    ):
        self.start_step = start_step
        self.start_layer = start_layer
        self.mask = mask

    def begin(self, control: AttentionControl, ctx: StepContext) -> None:
        self.num_steps = ctx.num_steps

    def _first_layer(self, layer: Layer) -> int:
        if self.start_layer is not None:
            return self.start_layer
        return (PAPER_START_LAYER * layer.count) // PAPER_LAYERS

    def needs_source(self, step: int, num_steps: int) -> bool:
        return self.start_step < num_steps

    def attend(
        self,
        layer: Layer,
        step: int,
        layout: RowMap,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        scale: float,
    ) -> torch.Tensor | None:
        if layer.is_cross or step < self.start_step or layer.index < self._first_layer(layer):
            return None
        pairs = layout.pairs(cond=True) + layout.pairs(cond=False)
        source_cond = layout.row(0, True)
        if source_cond is not None:  # unconditional target rows without their own source row
            pairs += [(source_cond, r, b) for (r, b) in self._orphans(layout)]
        if not pairs:
            return None
        out = F.scaled_dot_product_attention(query, key, value)
        mask = None if self.mask is None else self._mask_tokens(query.shape[2])
        for source_row, target_row, _ in pairs:
            q = query[target_row : target_row + 1]
            k, v = key[source_row : source_row + 1], value[source_row : source_row + 1]
            if mask is None:
                out[target_row] = F.scaled_dot_product_attention(q, k, v)[0]
            else:
                fg = self._masked(q, k, v, mask, scale)
                bg = self._masked(q, k, v, ~mask, scale)
                weight = mask.to(out)[None, :, None]
                out[target_row] = (fg * weight + bg * (1 - weight))[0]
        return out

    @staticmethod
    def _orphans(layout: RowMap) -> list[tuple[int, int]]:
        if layout.row(0, False) is not None:
            return []
        return [(r, b) for r, (b, c) in enumerate(zip(layout.branch, layout.cond)) if not c and b > 0]

    def _mask_tokens(self, tokens: int) -> torch.Tensor:
        """The mask resampled to a layer's (h*w,) query grid, as booleans."""
        mask = self.mask.float()
        height, width = mask.shape
        factor = (height * width / tokens) ** 0.5
        size = (max(1, round(height / factor)), max(1, round(width / factor)))
        return F.interpolate(mask[None, None], size=size, mode="nearest").flatten() > 0.5

    @staticmethod
    def _masked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        if not keep.any():
            return F.scaled_dot_product_attention(q, k, v)
        bias = torch.zeros(keep.shape, dtype=q.dtype, device=q.device).masked_fill(~keep.to(q.device), float("-inf"))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None, None, None, :])
