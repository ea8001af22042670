"""A generic latent-diffusion trainer: any (image tensor, caption) source in, a diffusers SD folder out.

Used for charforge's own mini models (portraits, BGM spectrograms); nothing here knows what the
images depict.
"""

from charforge.training.config import ModelSpec, TrainConfig
from charforge.training.data import SampleSource
from charforge.training.trainer import LatentDiffusionTrainer

__all__ = ["LatentDiffusionTrainer", "ModelSpec", "SampleSource", "TrainConfig"]
