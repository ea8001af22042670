"""Named pause points, so crash tests can `kill -9` a real process at a chosen moment of a write.

With `CHARFORGE_PAUSE_AT=NAME[,NAME...]` and `CHARFORGE_PAUSE_FILE=PATH` in the environment, the
time the process reaches one of the named points it writes the point's name to PATH and waits there
until it is killed, or until the test deletes PATH (then it goes on). Without those variables a pause
point is one dictionary lookup.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV_POINTS = "CHARFORGE_PAUSE_AT"
ENV_FILE = "CHARFORGE_PAUSE_FILE"
PAUSE_S = 120.0


def pause_point(name: str) -> None:
    """Wait here (to be killed, or resumed) if the test environment asks for this point."""
    points = os.environ.get(ENV_POINTS)
    if not points or name not in points.split(","):
        return
    marker = Path(os.environ[ENV_FILE])
    marker.write_text(name)
    deadline = time.monotonic() + PAUSE_S
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
