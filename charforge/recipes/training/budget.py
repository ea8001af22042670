"""The wall-clock budget of a whole training command: one deadline every phase plans against.

`--minutes` used to be split into phase budgets that counted only the optimisation steps, so data
rendering, latent encoding, checkpoints, export and an extra decoder phase all came on top (a
one-minute run took eight). A `Budget` starts when the command starts; each phase asks how much of
what is left is its share, after setting aside what must still happen after it (saving, exporting).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Budget:
    """`seconds` of wall-clock time from `started` (a `time.monotonic()` reading; default: now)."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def minutes(cls, minutes: float, started: float | None = None) -> Budget:
        return cls(minutes * 60.0) if started is None else cls(minutes * 60.0, started)

    @property
    def deadline(self) -> float:
        return self.started + self.seconds

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def spent(self) -> float:
        return time.monotonic() - self.started
