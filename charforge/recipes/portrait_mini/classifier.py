"""A tiny CNN that reads a 64x64 portrait's identity attributes: the judge of generated samples.

Expressions are read by the emotion judge (`judge.py`), which regresses all eight intensities.

It is trained only on renderer images, with blur, noise and colour jitter, so that a generated
portrait (slightly soft and noisy) is read the way its prompt's renderer twin would be. It is tiny
(about 100k parameters) and ships beside the renderer.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from safetensors.torch import save as save_tensors
from torch import nn
from tqdm.auto import tqdm

from charforge.errors import ModelLoadError
from charforge.files import atomic_write
from charforge.recipes.portrait_mini import population, render
from charforge.recipes.portrait_mini.dataset import image_to_tensor
from charforge.recipes.portrait_mini.render import Portrait

log = logging.getLogger(__name__)

WEIGHTS = Path(__file__).with_name("classifier.safetensors")

# head name -> (Portrait field, class names)
HEADS: dict[str, tuple[str, tuple[str, ...]]] = {
    "hair_colour": ("hair_colour", tuple(render.HAIR_COLOURS)),
    "hair_style": ("hair_style", render.HAIR_STYLES),
    "outfit": ("outfit", tuple(render.OUTFIT_COLOURS)),
    "background": ("background", tuple(render.BACKGROUND_COLOURS)),
    "accessory": ("accessory", render.ACCESSORIES),
}


class PortraitClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(block(3, 16), block(16, 32), block(32, 48), block(48, 64))
        self.heads = nn.ModuleDict({name: nn.Linear(64 * 4 * 4, len(classes)) for name, (_, classes) in HEADS.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(x).flatten(1)
        return {name: head(h) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, list[str]]:
        """images: N x 3 x 64 x 64 in [-1, 1] -> class names per head."""
        self.eval()
        logits = self(images)
        return {name: [HEADS[name][1][int(i)] for i in out.argmax(-1)] for name, out in logits.items()}


def _labels(portraits: list[Portrait]) -> dict[str, torch.Tensor]:
    return {
        name: torch.tensor([classes.index(getattr(p, field)) for p in portraits])
        for name, (field, classes) in HEADS.items()
    }


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blur, shift, colour jitter and noise: the ways a decoded sample differs from a clean render."""
    n = x.shape[0]
    sigma = torch.rand(n, generator=gen) * 1.0
    k = torch.arange(-2, 3, dtype=torch.float32)
    kernels = torch.exp(-(k[None] ** 2) / (2 * sigma[:, None].clamp_min(1e-3) ** 2))
    kernels = kernels / kernels.sum(-1, keepdim=True)
    out = torch.empty_like(x)
    for i in range(n):
        w = kernels[i]
        y = F.conv2d(
            F.pad(x[i : i + 1], (2, 2, 0, 0), mode="replicate"), w.view(1, 1, 1, 5).repeat(3, 1, 1, 1), groups=3
        )
        out[i : i + 1] = F.conv2d(
            F.pad(y, (0, 0, 2, 2), mode="replicate"), w.view(1, 1, 5, 1).repeat(3, 1, 1, 1), groups=3
        )
    shifts = torch.randint(-1, 2, (2,), generator=gen)
    out = torch.roll(out, shifts=(int(shifts[0]), int(shifts[1])), dims=(2, 3))
    gain = 1 + 0.08 * (torch.rand(n, 3, 1, 1, generator=gen) - 0.5)
    bias = 0.08 * (torch.rand(n, 3, 1, 1, generator=gen) - 0.5)
    noise = torch.randn(out.shape, generator=gen) * (0.06 * torch.rand(n, 1, 1, 1, generator=gen))
    return (out * gain + bias + noise).clamp(-1, 1)


def render_set(
    seed: int, count: int, *, held_out: bool | None, min_intensity: float = 0.3
) -> tuple[torch.Tensor, list[Portrait]]:
    portraits = list(population.sample_portraits(seed, count, held_out=held_out, min_intensity=min_intensity))
    images = torch.stack([image_to_tensor(render.render(p)[0]) for p in portraits])
    return images, portraits


def train_classifier(seconds: float = 480.0, count: int = 8000, seed: int = 7, batch: int = 64) -> PortraitClassifier:
    """Train on `count` renders (held-out identities included: the judge must know every combination)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    images, portraits = render_set(seed, count, held_out=None)
    labels = _labels(portraits)
    model = PortraitClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    model.train()
    start = time.monotonic()
    bar = tqdm(total=int(seconds), unit="s", desc="train classifier", mininterval=5.0)
    step = 0
    while (elapsed := time.monotonic() - start) < seconds:
        for g in opt.param_groups:
            g["lr"] = 3e-3 * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * elapsed / seconds)))
        idx = torch.randint(count, (batch,), generator=gen)
        logits = model(augment(images[idx], gen))
        loss = sum(F.cross_entropy(logits[name], labels[name][idx]) for name in HEADS)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        bar.n = min(int(elapsed), bar.total)
        bar.set_postfix(step=step, loss=f"{float(loss):.3f}")
    bar.close()
    return model.eval()


def save_classifier(model: PortraitClassifier, path: str | Path = WEIGHTS) -> Path:
    path = Path(path)
    return atomic_write(path, save_tensors({k: v.contiguous() for k, v in model.state_dict().items()}))


def load_classifier(path: str | Path = WEIGHTS) -> PortraitClassifier:
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(
            f"portrait classifier weights not found at {path}; "
            "train them with `python -m charforge.recipes.portrait_mini.classifier`"
        )
    model = PortraitClassifier()
    own = model.state_dict()
    model.load_state_dict({k: v for k, v in load_file(str(path)).items() if k in own})
    return model.eval()


def accuracy(model: PortraitClassifier, images: torch.Tensor, portraits: list[Portrait]) -> dict[str, float]:
    preds: dict[str, list[str]] = {name: [] for name in HEADS}
    for start in range(0, len(images), 128):
        for name, values in model.predict(images[start : start + 128]).items():
            preds[name] += values
    return {
        name: float(np.mean([pred == getattr(p, HEADS[name][0]) for pred, p in zip(preds[name], portraits)]))
        for name in HEADS
    }


if __name__ == "__main__":  # python -m charforge.recipes.portrait_mini.classifier: retrain the shipped judge
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    clf = train_classifier()
    save_classifier(clf)
    imgs, ps = render_set(99, 500, held_out=True)
    log.info("held-out render accuracy: %s", accuracy(clf, imgs, ps))
