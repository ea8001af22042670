"""Peak-safe level handling shared by the decoder and the file writer.

Griffin-Lim output has an arbitrary absolute level (its phase guess moves energy between samples),
so every waveform leaving charforge passes through one of these two functions and can never clip.
"""

from __future__ import annotations

import numpy as np

from charforge.errors import InvalidInput

#: -1 dBFS: leaves headroom for lossy encoders (Vorbis overshoots by a fraction of a dB).
DEFAULT_PEAK = 10 ** (-1 / 20)


def _checked(samples: np.ndarray) -> np.ndarray:
    y = np.asarray(samples, dtype=np.float32)
    if y.ndim != 1:
        raise InvalidInput(f"expected mono samples (1-D array), got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise InvalidInput("samples contain NaN or infinity")
    return y


def normalize_peak(samples: np.ndarray, peak: float = DEFAULT_PEAK) -> np.ndarray:
    """Scale so the largest absolute sample equals `peak` (silence stays silence)."""
    if not 0 < peak <= 1:
        raise InvalidInput(f"peak must be in (0, 1], got {peak}")
    y = _checked(samples)
    top = float(np.max(np.abs(y))) if y.size else 0.0
    return y if top == 0.0 else (y * (peak / top)).astype(np.float32)


def limit_peak(samples: np.ndarray, ceiling: float = DEFAULT_PEAK) -> np.ndarray:
    """Turn the level down only when it would exceed `ceiling`, so quiet music stays quiet."""
    if not 0 < ceiling <= 1:
        raise InvalidInput(f"ceiling must be in (0, 1], got {ceiling}")
    y = _checked(samples)
    top = float(np.max(np.abs(y))) if y.size else 0.0
    return y if top <= ceiling else (y * (ceiling / top)).astype(np.float32)
