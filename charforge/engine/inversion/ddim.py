"""Plain DDIM inversion: the sampler run backwards, nothing fitted.

It reconstructs well at guidance 1; at the guidance edits need (7.5) the trajectory drifts, which the
other methods correct.
"""

from __future__ import annotations

from charforge.engine.inversion.base import InversionMethod


class DDIMInversion(InversionMethod):
    name = "ddim"
