"""How a `charforge serve` process is configured: where the workspace is, who may call it, how much it accepts."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from charforge.tools.limits import Limits

ENV_API_KEY = "CHARFORGE_API_KEY"


class ServiceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    workspace: Path | None = None  # None: $CHARFORGE_HOME, else ./.charforge
    model: str | None = None  # the model characters created over HTTP are drawn with (None: charforge-mini)
    api_key: str | None = Field(default=None, min_length=8, repr=False)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    limits: Limits = Limits()
    worker: bool = True  # False: accept and queue jobs, leave rendering to another process
    batch: int = Field(default=8, ge=1, le=64)  # waiting CG jobs of one character the worker draws together


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
