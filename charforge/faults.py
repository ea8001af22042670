"""Named pause points, so crash tests can `kill -9` a real process at a chosen moment of a write.

With `CHARFORGE_PAUSE_AT=NAME[,NAME...]` and `CHARFORGE_PAUSE_FILE=PATH` in the environment, the
first time the process reaches one of the named points it writes the point's name to PATH and sleeps
until it is killed. Without those variables a pause point is one dictionary lookup.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV_POINTS = "CHARFORGE_PAUSE_AT"
ENV_FILE = "CHARFORGE_PAUSE_FILE"
PAUSE_S = 120.0


def pause_point(name: str) -> None:
    """Wait here to be killed if the test environment asks for this point."""
    points = os.environ.get(ENV_POINTS)
    if not points or name not in points.split(","):
        return
    Path(os.environ[ENV_FILE]).write_text(name)
    time.sleep(PAUSE_S)
