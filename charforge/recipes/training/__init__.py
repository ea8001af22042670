"""A generic latent-diffusion trainer: any (image tensor, caption) source in, a diffusers SD folder out.

Used for charforge's own mini models (portraits, BGM spectrograms); nothing here knows what the
images depict.
"""

from charforge.recipes.training.config import ModelSpec, TrainConfig
from charforge.recipes.training.data import SampleSource
from charforge.recipes.training.trainer import LatentDiffusionTrainer

__all__ = ["LatentDiffusionTrainer", "ModelSpec", "SampleSource", "TrainConfig"]
