"""Prompt-to-Prompt (Hertz et al. 2022): edit an image by editing its prompt's attention.

Branch 0 is the source prompt, branches 1.. the edited prompts, all denoised together. While the
cross-attention of a target is replaced by the source's (mapped through the word swap or the token
alignment), the layout stays the source's and only what the new words describe changes; self-attention
replacement in the first steps keeps the geometry too. Reweighting scales the attention to chosen
tokens ("more smiling"), and local blend confines the change to where the edited words attend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from charforge.engine.attention.control import AttentionControl, Controller, Layer, RowMap
from charforge.engine.attention.store import AttentionStore
from charforge.engine.attention.tokens import (
    WIDTH,
    chunk_count,
    chunks_of,
    fit_columns,
    max_columns,
    refinement_alignment,
    replacement_mapper,
    word_columns,
)
from charforge.engine.hooks import StepContext
from charforge.errors import InvalidInput

# A fraction of the steps (from the start), explicit (start, end) fractions, or per word with "default_".
StepSpec = float | tuple[float, float] | Mapping[str, float | tuple[float, float]]


def _bounds(spec: float | tuple[float, float]) -> tuple[float, float]:
    start, end = (0.0, float(spec)) if isinstance(spec, (int, float)) else (float(spec[0]), float(spec[1]))
    if not 0.0 <= start <= end <= 1.0:
        raise InvalidInput(f"step window {spec!r} must satisfy 0 <= start <= end <= 1")
    return start, end


def step_window(spec: float | tuple[float, float], num_steps: int) -> torch.Tensor:
    """Boolean (num_steps,) mask of the steps inside a fractional window, as the paper counts them."""
    start, end = _bounds(spec)
    active = torch.zeros(num_steps, dtype=torch.bool)
    active[int(start * num_steps) : int(end * num_steps)] = True
    return active


def word_schedule(
    spec: StepSpec, num_steps: int, tokenizer: Any, prompt: str, chunks: int | None = None
) -> torch.Tensor:
    """(num_steps, columns) 0/1 weights: when each token of `prompt` takes the source's cross-attention.

    77 columns per chunk, as many chunks as the prompt needs unless given (a word in chunks the
    conditioning left out has no column to schedule)."""
    columns = WIDTH * (chunks or chunk_count(tokenizer, prompt))
    if not isinstance(spec, Mapping):
        return step_window(spec, num_steps)[:, None].float().expand(num_steps, columns).clone()
    schedule = step_window(spec.get("default_", 1.0), num_steps)[:, None].float().repeat(1, columns)
    for word, window in spec.items():
        if word == "default_":
            continue
        kept = [c for c in word_columns(tokenizer, prompt, word) if c < columns]
        schedule[:, kept] = step_window(window, num_steps)[:, None].float()
    return schedule


class _AttentionEdit(Controller):
    """Shared schedule logic of replace and refine: which steps take the source's maps.

    The token mapping and schedules are built for the width of the conditioning the loop runs with
    (77 columns per prompt chunk, read from the step context), so words in any chunk line up.

    Whenever a target's new maps are exactly the source's (self-attention replacement; a cross
    replacement whose token mapping is the identity and covers every token at this step) the edit
    copies the source's queries and keys into the target row instead of materialising the maps:
    softmax(q_s k_s^T) v_t is what the paper computes, at the price of a fused attention call.
    """

    def __init__(
        self,
        tokenizer: Any,
        source: str,
        targets: Sequence[str],
        cross_replace_steps: StepSpec = 0.8,
        self_replace_steps: float | tuple[float, float] = 0.4,
        self_max_tokens: int = 16 * 16,
    ):
        if not targets:
            raise InvalidInput("an attention edit needs at least one target prompt")
        self.tokenizer = tokenizer
        self.source = source
        self.targets = list(targets)
        self.cross_replace_steps = cross_replace_steps
        self.self_replace_steps = self_replace_steps
        self.self_max_tokens = self_max_tokens
        self.cross_alpha = torch.zeros(0)
        self.cross_copy = torch.zeros(0, dtype=torch.bool)
        self.self_active = torch.zeros(0, dtype=torch.bool)
        self._last_step = 0
        self.plan(1, chunk_count(tokenizer, source, *self.targets))

    def plan(self, num_steps: int, chunks: int) -> None:
        """Build the token mapping and step schedules for a call of `num_steps` over `chunks` chunks
        of conditioning (validates the words eagerly)."""
        identity = self.align(chunks)
        self.cross_alpha = torch.stack(
            [word_schedule(self.cross_replace_steps, num_steps, self.tokenizer, t, chunks) for t in self.targets],
            dim=1,
        )  # (steps, targets, columns)
        self.cross_copy = (self.cross_alpha == 1).all(dim=-1) & torch.tensor(identity)[None, :]
        self.self_active = step_window(self.self_replace_steps, num_steps)
        used = self.cross_alpha.flatten(1).amax(dim=1).bool() | self.self_active
        self._last_step = int(used.nonzero().max()) + 1 if used.any() else 0

    def begin(self, control: AttentionControl, ctx: StepContext) -> None:
        self.plan(ctx.num_steps, chunks_of(ctx.text_tokens))

    def align(self, chunks: int) -> list[bool]:
        """Build the source -> target column mapping over `chunks` chunks; per target, whether it is
        the identity (the target's maps are then exactly the source's)."""
        raise NotImplementedError

    def needs_source(self, step: int, num_steps: int) -> bool:
        return step < self._last_step

    def edit_qkv(self, layer: Layer, step: int, layout: RowMap, qkv: list[torch.Tensor]) -> bool:
        if step >= self.self_active.numel():
            return False
        pairs = layout.pairs(cond=True)
        if layer.is_cross:
            pairs = [p for p in pairs if self.cross_copy[step, p[2] - 1]]
        elif not (self.self_active[step] and qkv[0].shape[2] <= self.self_max_tokens):
            pairs = []
        if not pairs:
            return False
        query, key = qkv[0].clone(), qkv[1].clone()
        for source_row, target_row, _ in pairs:
            query[target_row], key[target_row] = query[source_row], key[source_row]
        qkv[0], qkv[1] = query, key
        return True

    def wants_probs(self, layer: Layer, step: int, layout: RowMap, tokens: int) -> bool:
        if not layer.is_cross or step >= self.self_active.numel():
            return False
        return any(
            bool(self.cross_alpha[step, b - 1].any()) and not bool(self.cross_copy[step, b - 1])
            for _, _, b in layout.pairs(cond=True)
        )

    def edit_probs(self, layer: Layer, step: int, layout: RowMap, probs: torch.Tensor) -> torch.Tensor:
        for source_row, target_row, branch in layout.pairs(cond=True):
            if self.cross_copy[step, branch - 1]:
                continue  # already given the source's maps through its queries and keys
            alpha = self.cross_alpha[step, branch - 1].to(probs)
            mapped = self.map_cross(probs[source_row], probs[target_row], branch - 1)
            probs[target_row] = mapped * alpha + probs[target_row] * (1 - alpha)
        return probs

    def map_cross(self, source: torch.Tensor, target: torch.Tensor, index: int) -> torch.Tensor:
        raise NotImplementedError


class Replace(_AttentionEdit):
    """Word swap ("smiling girl" -> "crying girl"): equal word counts, token-to-token mapping."""

    def align(self, chunks: int) -> list[bool]:
        self.mappers = torch.stack([replacement_mapper(self.tokenizer, self.source, t, chunks) for t in self.targets])
        eye = torch.eye(self.mappers.shape[-1])
        return [torch.equal(m, eye) for m in self.mappers]

    def map_cross(self, source: torch.Tensor, target: torch.Tensor, index: int) -> torch.Tensor:
        return source @ self.mappers[index].to(source)


class Refine(_AttentionEdit):
    """Added words ("girl" -> "smiling girl"): aligned tokens copy the source, new tokens keep their own."""

    def align(self, chunks: int) -> list[bool]:
        aligned = [refinement_alignment(self.tokenizer, self.source, t, chunks) for t in self.targets]
        self.indices = torch.stack([a[0] for a in aligned])
        self.alphas = torch.stack([a[1] for a in aligned])
        straight = torch.arange(self.indices.shape[-1])
        return [torch.equal(i, straight) and bool((a == 1).all()) for i, a in zip(self.indices, self.alphas)]

    def map_cross(self, source: torch.Tensor, target: torch.Tensor, index: int) -> torch.Tensor:
        alpha = self.alphas[index].to(source)
        return source[..., self.indices[index].to(source.device)] * alpha + target * (1 - alpha)


class Reweight(Controller):
    """Per-token equalizer: scale the cross-attention to chosen tokens by a weight.

    Scaling column j of the attention map is the same as scaling value row j (P W V = P (W V)), so
    the weights are applied to the values and the fused kernel keeps running. `weights` maps a branch
    to a (columns,) vector, 77 per prompt chunk; it is cut or extended with ones to the width of the
    conditioning (rows padded with empty chunks). Branch None means every conditional row, which is
    how plain generation honours "(smiling:1.4)" emphasis. It stacks on replace/refine: the target
    then gets the source's maps, reweighted.
    """

    def __init__(self, weights: Mapping[int | None, torch.Tensor], steps: float | tuple[float, float] = 1.0):
        self.weights = {b: w.float() for b, w in weights.items()}
        self.steps = steps
        self.active = step_window(steps, 1)

    @classmethod
    def from_words(
        cls, tokenizer: Any, prompt: str, words: Mapping[str, float], branch: int | None = None, **kwargs: Any
    ) -> Reweight:
        weights = torch.ones(max_columns(tokenizer, prompt))
        for word, weight in words.items():
            weights[word_columns(tokenizer, prompt, word)] = float(weight)
        return cls({branch: weights}, **kwargs)

    def begin(self, control: AttentionControl, ctx: StepContext) -> None:
        self.active = step_window(self.steps, ctx.num_steps)

    def edit_qkv(self, layer: Layer, step: int, layout: RowMap, qkv: list[torch.Tensor]) -> bool:
        if not layer.is_cross or step >= self.active.numel() or not self.active[step]:
            return False
        value = None
        for row, branch in layout.cond_rows():
            weights = self.weights.get(branch, self.weights.get(None))
            if weights is None:
                continue
            value = qkv[2].clone() if value is None else value
            value[row] = value[row] * fit_columns(weights, value.shape[2]).to(value)[None, :, None]
        if value is None:
            return False
        qkv[2] = value
        return True


class LocalBlend(Controller):
    """Keep everything outside the edited region identical to the source, step by step.

    After each scheduler step a target row becomes source + mask * (target - source), row 0 being
    the source. The mask is either given (`LocalBlend(mask=cells)`: latent cells (h, w), 1 = may
    change, known beforehand such as a character's face, applied from the first step) or found from
    where the given words attend: the union over branches of their cross-attention averaged over the steps so
    far, max-pooled to dilate
    it, rescaled to [0, 1] and thresholded. The paper divides by the maximum; rescaling from the
    minimum too is the same for the peaked maps of large models and still separates regions when a
    small model's maps are flat with a faint peak. Once the source branch is no longer computed (an
    edit stops paying for it when no controller reads its attention) a found mask is frozen: the
    source's maps stop changing anyway.
    """

    stage = 0

    def __init__(
        self,
        tokenizer: Any = None,
        prompts: Sequence[str] = (),
        words: Sequence[str] = (),
        threshold: float = 0.3,
        dilation: int = 1,
        start: float = 0.2,
        max_tokens: int = 16 * 16,
        *,
        mask: torch.Tensor | None = None,
    ):
        if mask is not None and words:
            raise InvalidInput("local blend takes words or a mask, not both")
        if mask is None and not words:
            raise InvalidInput("local blend needs at least one word")
        self.columns: dict[int, list[int]] = {}
        for word in words:
            found = False
            for branch, prompt in enumerate(prompts):
                try:
                    self.columns.setdefault(branch, []).extend(word_columns(tokenizer, prompt, word))
                    found = True
                except InvalidInput:
                    continue
            if not found:
                raise InvalidInput(f"blend word '{word}' occurs in none of the prompts")
        self.threshold = threshold
        self.dilation = dilation
        self.start = start
        self.store = AttentionStore(cross_max_tokens=max_tokens, self_max_tokens=0, keep_steps=False)
        self.fixed = mask
        self.mask = mask
        self.frozen = mask is not None
        self.start_step = 0

    def begin(self, control: AttentionControl, ctx: StepContext) -> None:
        if self.fixed is not None:  # a given mask: no attention to read, blend from the first step
            return
        self.store.begin(control, ctx)
        self.mask, self.frozen = None, False
        self.start_step = int(self.start * ctx.num_steps)

    def wants_probs(self, layer: Layer, step: int, layout: RowMap, tokens: int) -> bool:
        return not self.frozen and layer.is_cross and self.store.wants_probs(layer, step, layout, tokens)

    def edit_probs(self, layer: Layer, step: int, layout: RowMap, probs: torch.Tensor) -> torch.Tensor:
        return self.store.edit_probs(layer, step, layout, probs)

    def _update_mask(self, latent_size: tuple[int, int]) -> None:
        union = None
        recorded = {b for (_, b) in self.store.sums}
        for branch, columns in self.columns.items():
            if branch not in recorded:
                continue
            average = self.store.average_cross(branch)
            kept = [c for c in columns if c < average.shape[-1]]  # a target cut to its source's chunks
            if not kept:
                continue
            heat = average[..., kept].sum(dim=-1)[None, None]
            size = 2 * self.dilation + 1
            heat = F.max_pool2d(heat, size, stride=1, padding=self.dilation)
            heat = F.interpolate(heat, size=latent_size, mode="nearest")
            low = heat.amin()
            heat = (heat - low) / (heat.amax() - low).clamp_min(1e-12)
            mask = heat > self.threshold
            union = mask if union is None else union | mask
        if union is not None:
            self.mask = union[0, 0]

    def step_end(self, control: AttentionControl, ctx: StepContext, latents: torch.Tensor) -> torch.Tensor:
        source_computed = ctx.layout is None or 0 in ctx.layout.cond_rows
        if not source_computed and self.mask is not None:
            self.frozen = True
        if ctx.index < self.start_step:
            return latents
        if not self.frozen:
            self._update_mask(tuple(latents.shape[-2:]))
        if self.mask is None:
            return latents
        mask = self.mask.to(latents)
        blended = latents.clone()
        blended[1:] = latents[:1] + mask * (latents[1:] - latents[:1])
        return blended
