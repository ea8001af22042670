"""Samplers by name: the scheduler *is* the sampler, so switching one is a config swap, not new code.

Each scheduler is rebuilt `from_config` of the model's own scheduler config, keeping the model's beta
schedule, prediction type and timestep spacing; only the stepping rule changes. A fresh instance is
made per call because diffusers schedulers are stateful (step index, multistep history).
"""

from __future__ import annotations

from typing import Any

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    LMSDiscreteScheduler,
)

from charforge.errors import InvalidInput

# name -> (class, name Stable Diffusion front ends print in `Sampler:`)
SCHEDULERS: dict[str, tuple[type, str]] = {
    "ddim": (DDIMScheduler, "DDIM"),
    "dpm++": (DPMSolverMultistepScheduler, "DPM++ 2M"),
    "euler": (EulerDiscreteScheduler, "Euler"),
    "euler-a": (EulerAncestralDiscreteScheduler, "Euler a"),
    "lms": (LMSDiscreteScheduler, "LMS"),
    "lcm": (LCMScheduler, "LCM"),
}


def scheduler_key(name: str) -> str:
    """The canonical name for `name`, or one clear error listing the choices."""
    key = name.strip().lower()
    if key not in SCHEDULERS:
        raise InvalidInput(f"unknown scheduler '{name}' (choose from {', '.join(SCHEDULERS)})")
    return key


def make_scheduler(name: str, base_config: Any) -> Any:
    """A fresh scheduler of kind `name` carrying the model's noise schedule."""
    cls, _ = SCHEDULERS[scheduler_key(name)]
    return cls.from_config(base_config)


def sampler_label(name: str) -> str:
    """The A1111-style sampler name written into PNG parameters."""
    return SCHEDULERS[scheduler_key(name)][1]
