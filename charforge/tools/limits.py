"""What one caller may ask of the model: the limits every surface (tools, MCP, HTTP) shares.

Cache hits are free; only work that will run the model counts against the per-character rate, so an
agent replaying known states is never throttled while one asking for a new picture every turn is.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from charforge.tools.models import MAX_SECONDS, MAX_STEPS


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_argument_bytes: int = Field(default=16_384, ge=256)
    max_seconds: float = Field(default=MAX_SECONDS, gt=0, le=MAX_SECONDS)
    max_steps: int = Field(default=MAX_STEPS, ge=1, le=MAX_STEPS)
    renders_per_minute: int = Field(default=6, ge=1, description="Model runs queued per character per minute.")
    max_queued: int = Field(default=64, ge=1, description="Unfinished jobs in the whole workspace.")


class RateLimiter:
    """Sliding one-minute window per key; thread-safe (HTTP handlers and MCP calls share one)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Record one use of `key`; returns 0 if allowed, else the seconds until a slot frees up."""
        with self._lock:
            now = self.clock()
            hits = self._hits[key]
            while hits and now - hits[0] >= 60.0:
                hits.popleft()
            if len(hits) >= self.per_minute:
                return max(0.001, 60.0 - (now - hits[0]))
            hits.append(now)
            return 0.0
