"""Edit strength: how far an edit moves a picture, as a continuous number per target row.

Prompt-to-Prompt swaps words, which is all or nothing: a model that draws "faintly smiling" almost
like "very smiling" gives an edit no intensity. This hook scales each step's *change* instead. At
every step the source branch's own noise prediction is known exactly from the inverted trajectory
(the one that moves x_t to the next trajectory latent), and each target row's guided prediction
becomes `source + s * (target - source)`. With s = 0 the row redraws the source picture exactly, with
s = 1 it is the plain edit, in between the change grows continuously, and s > 1 exaggerates it
(s < 0 draws away from the prompt: composable diffusion's negation, in a group with other rows). Each
step's contribution is scaled once (unlike blending latents after each step, which would shrink the
early, structure-forming steps geometrically), so the face changes by amounts that rise smoothly with s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from diffusers import DDIMScheduler

from charforge.engine.hooks import Hook, StepContext
from charforge.errors import InvalidInput
from charforge.validation import finite


class EditStrength(Hook):
    """Scales (and composes) target rows' changes from the source's prediction, which the inverted
    `trajectory` implies (or, with no trajectory, the source row's own prediction: an edit that
    denoises the source afresh, as a few-step student does, instead of replaying an inversion).

    `groups` lists target rows (1..) with their strengths, each a number or a (h, w) map of the latent
    (a mixture gives each emotion its own face parts); the rows of one group draw one picture:
    each step they all take `source + sum(s_r * (pred_r - source))`, so they stay one latent seen
    under several prompts (composable diffusion, one prompt per emotion of a mixture). A group of one
    row is a plain strength. `trajectory` holds the source latent before the first step and after
    each step (steps + 1 rows, as `InversionResult.trajectory`). Replays run on DDIM, whose step is
    linear in the prediction; that is what lets the source's prediction be read from two trajectory latents.
    """

    def __init__(self, trajectory: torch.Tensor | None, groups: Sequence[Mapping[int, float | torch.Tensor]]) -> None:
        rows = [row for group in groups for row in group]
        if any(row < 1 for row in rows) or len(set(rows)) != len(rows):
            raise InvalidInput("edit strengths apply to distinct target rows (1 and up); row 0 is the source")
        self.trajectory = trajectory
        checked = [{row: _checked(s) for row, s in group.items()} for group in groups if group]
        # a lone row at strength 1 is the plain edit: nothing to do for it
        self.groups = [g for g in checked if len(g) > 1 or not _is_one(next(iter(g.values())))]

    def before_scheduler_step(
        self, ctx: StepContext, latents: torch.Tensor, noise_pred: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.groups:
            return latents, noise_pred
        if self.trajectory is None:
            source = noise_pred[0]
        elif isinstance(ctx.scheduler, DDIMScheduler):
            source = self.source_prediction(ctx, noise_pred)
        else:
            raise InvalidInput(f"edit strength needs a DDIM replay, not {type(ctx.scheduler).__name__}")
        out = noise_pred.clone()
        for group in self.groups:
            composed = source + sum(_on(s, source) * (noise_pred[row] - source) for row, s in group.items())
            for row in group:
                out[row] = composed
        return latents, out

    def source_prediction(self, ctx: StepContext, like: torch.Tensor) -> torch.Tensor:
        """The prediction that steps the source from trajectory[i] to trajectory[i + 1] (DDIM, eta 0):
        step(eps, t, x) = A x + B eps, so eps = (x_next - step(0, t, x)) / step(1, t, 0)."""
        x_t = self.trajectory[ctx.index].to(like)
        x_next = self.trajectory[ctx.index + 1].to(like)
        step = ctx.scheduler.step
        drift = step(torch.zeros_like(x_t), ctx.timestep, x_t, eta=0.0, return_dict=False)[0]
        gain = step(torch.ones_like(x_t), ctx.timestep, torch.zeros_like(x_t), eta=0.0, return_dict=False)[0]
        return (x_next - drift) / gain


def _checked(strength: float | torch.Tensor) -> float | torch.Tensor:
    if isinstance(strength, torch.Tensor):
        if strength.ndim != 2 or not bool(torch.isfinite(strength).all()):
            raise InvalidInput("an edit strength map must be a finite (h, w) tensor")
        low, high = float(strength.min()), float(strength.max())
    else:
        strength = low = high = finite(strength, "edit strength")
    if low < -3.0 or high > 3.0:
        raise InvalidInput(f"edit strength must be in [-3, 3], got {low:g}..{high:g}")
    return strength


def _is_one(strength: float | torch.Tensor) -> bool:
    return bool((strength == 1.0).all()) if isinstance(strength, torch.Tensor) else strength == 1.0


def _on(strength: float | torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    """A strength map broadcast over the latent's channels."""
    return strength.to(like)[None] if isinstance(strength, torch.Tensor) else strength
