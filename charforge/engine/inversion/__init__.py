"""Inversion: find the noise (and per-step corrections) from which the sampler redraws a given image.

An image is inverted once and then redrawn with any prompt (`charforge.engine.edit.replay`), so the
character stays the same person. Methods are plug-ins: each module here holds one `InversionMethod`,
registered below by name; `invert(model, image, prompt, "direct")` looks it up.
"""

from charforge.engine.inversion.base import (
    FollowInversion,
    InversionMethod,
    check_model,
    encode_mean,
    inversion_schedulers,
)
from charforge.engine.inversion.ddim import DDIMInversion
from charforge.engine.inversion.direct import DirectInversion
from charforge.engine.inversion.negative_prompt import NegativePromptInversion
from charforge.engine.inversion.null_text import NullTextInversion
from charforge.engine.inversion.registry import METHODS, get_method, register_method
from charforge.engine.inversion.result import InversionResult
from charforge.engine.inversion.run import DEFAULT_METHOD, invert, invert_latent

register_method(DDIMInversion())
register_method(NullTextInversion())
register_method(NegativePromptInversion())
register_method(DirectInversion())

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "FollowInversion",
    "InversionMethod",
    "InversionResult",
    "check_model",
    "encode_mean",
    "get_method",
    "invert",
    "invert_latent",
    "inversion_schedulers",
    "register_method",
]
