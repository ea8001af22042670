"""Negative-prompt inversion (Miyake et al. 2023): the source prompt is also the unconditional prompt.

Guidance then cancels for the source, so it follows the guidance-1 trajectory with nothing fitted:
free, about as good as guidance-1 DDIM. At replay the source needs no unconditional pass.
"""

from __future__ import annotations

from collections.abc import Sequence

from charforge.engine.hooks import StepContext
from charforge.engine.inversion.base import FollowInversion, InversionMethod
from charforge.engine.inversion.result import InversionResult
from charforge.engine.loading import ModelBundle
from charforge.engine.prompts import PromptEmbeds, encode_text


class _FollowUnguided(FollowInversion):
    def unguided_rows(self, ctx: StepContext) -> Sequence[int]:
        return (0,) if self.shortcut else ()


class NegativePromptInversion(InversionMethod):
    name = "negative-prompt"
    follow = _FollowUnguided

    def source_embeddings(
        self, model: ModelBundle, inversion: InversionResult, source_prompt: str | None = None
    ) -> tuple[PromptEmbeds, PromptEmbeds]:
        cond = encode_text(model, [inversion.prompt if source_prompt is None else source_prompt])
        return cond, cond
