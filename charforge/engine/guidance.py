"""Loss guidance: steer sampling with the gradient of any differentiable loss on the predicted image,
without touching the model (HF diffusion course, unit 2). Works with every scheduler and prediction
type because x0 comes from `predict_x0`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from charforge.engine.hooks import Hook, StepContext
from charforge.engine.loading import ModelBundle
from charforge.engine.loop import decode_latents, predict_x0

Loss = Callable[[torch.Tensor], torch.Tensor]


class LossGuidance(Hook):
    """Before each scheduler step, move the latents down the gradient of `scale * loss(x0)`.

    With `on_pixels` the loss sees the decoded prediction in [-1, 1] (B, 3, H, W), which costs a VAE
    decode and backward per guided step; otherwise it sees the predicted latents. `every` guides only
    every n-th step to trade strength for speed.
    """

    def __init__(self, model: ModelBundle, loss: Loss, scale: float, *, on_pixels: bool = True, every: int = 1) -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        self.model, self.loss, self.scale, self.on_pixels, self.every = model, loss, scale, on_pixels, every

    def before_scheduler_step(
        self, ctx: StepContext, latents: torch.Tensor, noise_pred: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if ctx.index % self.every:
            return latents, noise_pred
        with torch.enable_grad():
            x = latents.detach().requires_grad_(True)
            x0 = predict_x0(ctx.scheduler, noise_pred.detach(), ctx.timestep, x, ctx.prediction_type)
            target = decode_latents(self.model, x0) if self.on_pixels else x0
            loss = self.loss(target) * self.scale
            (grad,) = torch.autograd.grad(loss, x)
        return (latents - grad).detach(), noise_pred


def colour_loss(rgb: tuple[float, float, float]) -> Loss:
    """Mean absolute distance of pixels (in [-1, 1]) to one colour given in [0, 1] (a mood tint)."""
    target = torch.tensor(rgb, dtype=torch.float32) * 2 - 1

    def loss(images: torch.Tensor) -> torch.Tensor:
        return (images - target.to(images.device, images.dtype)[None, :, None, None]).abs().mean()

    return loss
