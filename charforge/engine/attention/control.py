"""Attention control as diffusers attention processors, driven by composable controllers.

Prompt-to-Prompt, MasaCtrl and the attention store all need the same thing: see (and sometimes
change) the attention inside the UNet while the one sampling loop runs. The reference code did this
by monkey-patching `forward` of the attention modules, which broke with every diffusers release.
Here it is a stock attention-processor class, installed with `unet.set_attn_processor` by the loop
for one call (the `Hook.attention_processors` contract) and restored afterwards.

One `AttentionControl` hook owns the processors and a list of controllers. The processor computes
q, k, v exactly like diffusers' `AttnProcessor2_0` and asks the controllers, per layer and step,
whether they want to look: when none does it runs the same fused attention (so an idle controller
costs nothing and changes nothing); otherwise it materialises the probabilities, passes them through
the controllers in stage order (recorders before editors), and multiplies by the values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from charforge.engine.hooks import BatchLayout, Hook, StepContext

PLACES = ("down", "mid", "up")


@dataclass(frozen=True)
class Layer:
    """One attention layer of the UNet, in execution order (down -> mid -> up)."""

    name: str
    place: str
    is_cross: bool
    index: int  # among layers of the same kind (self or cross), in execution order
    count: int  # how many layers of that kind the UNet has


@dataclass(frozen=True)
class RowMap:
    """Which branch (0 = source, 1.. = targets) and which guidance half each UNet batch row holds.

    Built from the loop's `BatchLayout` (image rows = branches): edits leave rows out (the source
    branch once no controller needs it, or its unconditional pass under direct inversion), so
    controllers look rows up here instead of assuming a fixed batch shape.
    """

    branch: tuple[int, ...]
    cond: tuple[bool, ...]

    @classmethod
    def from_layout(cls, layout: BatchLayout) -> RowMap:
        rows = tuple(layout.uncond_rows) + tuple(layout.cond_rows)
        return cls(rows, (False,) * len(layout.uncond_rows) + (True,) * len(layout.cond_rows))

    @classmethod
    def standard(cls, branches: int, guided: bool) -> RowMap:
        """[uncond rows..., cond rows...], the batch diffusers' pipelines build."""
        rows = tuple(range(branches))
        return cls.from_layout(BatchLayout(uncond_rows=rows if guided else (), cond_rows=rows))

    def row(self, branch: int, cond: bool) -> int | None:
        for r, (b, c) in enumerate(zip(self.branch, self.cond)):
            if b == branch and c == cond:
                return r
        return None

    def pairs(self, cond: bool) -> list[tuple[int, int, int]]:
        """(source row, target row, target branch) for every target row of one guidance half."""
        source = self.row(0, cond)
        if source is None:
            return []
        return [(source, r, b) for r, (b, c) in enumerate(zip(self.branch, self.cond)) if c == cond and b > 0]

    def cond_rows(self) -> list[tuple[int, int]]:
        """(row, branch) of every conditional row."""
        return [(r, b) for r, (b, c) in enumerate(zip(self.branch, self.cond)) if c]


class Controller:
    """One attention-control algorithm; the default methods leave attention alone.

    A controller acts on a layer in one or more of three ways, cheapest first:
    - `edit_qkv`: rewrite queries/keys/values before attention. Copying the source's queries and
      keys into a target row gives that row the source's attention weights without materialising
      them (P2P replacement); scaling a row's values by token scales its attention to those tokens
      (reweighting). The fused attention kernel still does the work.
    - `attend`: compute the whole output itself (MasaCtrl: target queries against source keys).
    - `edit_probs`: see the materialised probabilities of the conditional rows; `stage` <= 0 marks a
      recorder, which sees the model's own attention (before any edit) and must not change it.
    """

    stage = 1

    def begin(self, control: AttentionControl, ctx: StepContext) -> None:
        """Called once per call before the first step (sizes, schedules)."""

    def wants_probs(self, layer: Layer, step: int, layout: RowMap, tokens: int) -> bool:
        """Whether this controller needs the attention probabilities of this layer at this step."""
        return False

    def edit_probs(self, layer: Layer, step: int, layout: RowMap, probs: torch.Tensor) -> torch.Tensor:
        """probs: (rows, heads, queries, keys), conditional rows only, owned by the call (edit in place)."""
        return probs

    def edit_qkv(self, layer: Layer, step: int, layout: RowMap, qkv: list[torch.Tensor]) -> bool:
        """Replace entries of [query, key, value] with edited copies (never write into the given
        tensors: other rows and layers still use them); True if anything changed."""
        return False

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
        """Compute the whole attention output of a layer (queries against other rows' keys), or None."""
        return None

    def step_end(self, control: AttentionControl, ctx: StepContext, latents: torch.Tensor) -> torch.Tensor:
        """Latent callback after the scheduler step (local blend)."""
        return latents

    def needs_source(self, step: int, num_steps: int) -> bool:
        """Whether the source branch must still be computed at `step` for this controller."""
        return False


def _natural_key(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[._]", name))


def unet_layers(unet: Any) -> dict[str, Layer]:
    """Every attention processor slot of `unet`, described with place and execution order."""
    names = list(unet.attn_processors.keys())

    def place(name: str) -> str:
        return "down" if name.startswith("down") else "mid" if name.startswith("mid") else "up"

    ordered = sorted(names, key=lambda n: (PLACES.index(place(n)), _natural_key(n)))
    modules = dict(unet.named_modules())
    kinds = {
        n: bool(getattr(modules.get(n.removesuffix(".processor")), "is_cross_attention", "attn2" in n)) for n in names
    }
    counts = {kind: sum(1 for n in names if kinds[n] == kind) for kind in (True, False)}
    seen = {True: 0, False: 0}
    layers: dict[str, Layer] = {}
    for name in ordered:
        kind = kinds[name]
        layers[name] = Layer(name, place(name), kind, seen[kind], counts[kind])
        seen[kind] += 1
    return layers


class ControlledAttnProcessor:
    """A diffusers attention processor that lets an `AttentionControl` see and edit attention."""

    def __init__(self, control: AttentionControl, layer: Layer):
        self.control = control
        self.layer = layer

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        hidden_states = self.control.attention(self.layer, query, key, value, attention_mask, attn.scale)

        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


class AttentionControl(Hook):
    """The one hook that installs controlled processors and runs a list of controllers.

    Controllers compose: an attention store, Prompt-to-Prompt replace/refine, a reweight on top,
    a local blend and MasaCtrl can all be passed together. The step index and the batch layout are
    read from the loop's `StepContext` at attention time, so rows the loop leaves out are accounted for.
    """

    def __init__(self, controllers: Sequence[Controller]):
        self.controllers = sorted(controllers, key=lambda c: c.stage)
        self.ctx: StepContext | None = None
        self.num_steps = 0
        self.latent_shape: tuple[int, int] = (0, 0)
        self._rows: tuple[Any, RowMap] | None = None

    def attention_processors(self, unet: Any) -> dict[str, Any]:
        return {name: ControlledAttnProcessor(self, layer) for name, layer in unet_layers(unet).items()}

    def on_begin(self, ctx: StepContext) -> None:
        self.ctx = ctx
        self.num_steps = ctx.num_steps
        self.latent_shape = tuple(ctx.latents.shape[-2:])
        for controller in self.controllers:
            controller.begin(self, ctx)

    def on_end(self, ctx: StepContext) -> None:
        self.ctx = None

    def on_step_end(self, ctx: StepContext, latents: torch.Tensor) -> torch.Tensor:
        for controller in self.controllers:
            latents = controller.step_end(self, ctx, latents)
        return latents

    def needs_source(self, step: int) -> bool:
        """Whether any controller still reads the source branch at `step` (else an edit drops it)."""
        return any(c.needs_source(step, self.num_steps) for c in self.controllers)

    @property
    def step(self) -> int:
        return 0 if self.ctx is None else self.ctx.index

    @property
    def rows(self) -> RowMap | None:
        """This step's row map, or None outside a loop call (the processors then stay out of the way)."""
        ctx = self.ctx
        if ctx is None:
            return None
        layout = ctx.layout
        if self._rows is None or self._rows[0] is not layout:
            rows = (
                RowMap.from_layout(layout)
                if layout is not None
                else RowMap.standard(ctx.latents.shape[0], ctx.guidance_scale > 1.0)
            )
            self._rows = (layout, rows)
        return self._rows[1]

    def attention(
        self,
        layer: Layer,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None,
        scale: float,
    ) -> torch.Tensor:
        """Attention output (rows, heads, queries, head_dim) for one layer call."""
        layout, step = self.rows, self.step
        if layout is None or len(layout.branch) != query.shape[0]:  # a UNet call the loop did not lay out
            return _fused(query, key, value, mask)
        tokens = query.shape[2]
        wanting = [c for c in self.controllers if c.wants_probs(layer, step, layout, tokens)]
        recorders = [c for c in wanting if c.stage <= 0]
        editors = [c for c in wanting if c.stage > 0]
        if mask is not None:  # masked attention (rare in UNets): one explicit path over every row
            qkv = [query, key, value]
            for controller in self.controllers:
                controller.edit_qkv(layer, step, layout, qkv)
            return self._explicit(wanting, layer, step, layout, *qkv, mask, scale)

        cond = [r for r, c in enumerate(layout.cond) if c]
        only_cond = RowMap(tuple(layout.branch[r] for r in cond), (True,) * len(cond))
        probs = None
        if recorders:  # the model's own maps, before any edit
            probs = _probs(query[cond], key[cond], scale)
            for controller in recorders:
                probs = controller.edit_probs(layer, step, only_cond, probs)
        qkv = [query, key, value]
        edited = [c.edit_qkv(layer, step, layout, qkv) for c in self.controllers]
        if any(edited):
            query, key, value = qkv
            probs = None
        for controller in self.controllers:
            out = controller.attend(layer, step, layout, query, key, value, scale)
            if out is not None:
                return out
        if editors:
            probs = _probs(query[cond], key[cond], scale) if probs is None else probs
            for controller in editors:
                probs = controller.edit_probs(layer, step, only_cond, probs)
        if probs is None:
            return _fused(query, key, value, None)
        uncond = [r for r, c in enumerate(layout.cond) if not c]
        out = query.new_empty(*query.shape[:-1], value.shape[-1])
        if uncond:
            out[uncond] = _fused(query[uncond], key[uncond], value[uncond], None)
        out[cond] = torch.matmul(probs.to(value.dtype), value[cond])
        return out

    @staticmethod
    def _explicit(
        controllers: list[Controller],
        layer: Layer,
        step: int,
        layout: RowMap,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor,
        scale: float,
    ) -> torch.Tensor:
        cond = [r for r, c in enumerate(layout.cond) if c]
        scores = torch.matmul(query, key.transpose(-1, -2)).float() * scale + mask
        probs = scores.softmax(dim=-1)
        only_cond = RowMap(tuple(layout.branch[r] for r in cond), (True,) * len(cond))
        edited = probs[cond]
        for controller in controllers:
            edited = controller.edit_probs(layer, step, only_cond, edited)
        probs[cond] = edited
        return torch.matmul(probs.to(value.dtype), value)


def _fused(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """diffusers' own attention call (AttnProcessor2_0), so idle layers compute exactly what it does."""
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=0.0, is_causal=False)


def _probs(query: torch.Tensor, key: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) in fp32, as diffusers' upcast_softmax does."""
    return (torch.matmul(query, key.transpose(-1, -2)).float() * scale).softmax(dim=-1)
