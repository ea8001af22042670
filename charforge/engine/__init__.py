"""The diffusion engine: model loading, the one sampling loop and the hooks that plug into it."""

from charforge.engine.hooks import Hook, StepContext
from charforge.engine.loading import ModelBundle, default_model_path, load_model

__all__ = ["Hook", "ModelBundle", "StepContext", "default_model_path", "load_model"]
