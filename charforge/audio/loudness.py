"""Steady loudness: every clip leaves charforge at one integrated loudness under a true-peak ceiling.

Peak normalisation (what Griffin-Lim output had before) makes a sparse calm clip and a dense one
sound several dB apart; games expect a library of tracks that sit at one level. Loudness is
ITU-R BS.1770 integrated loudness (K-weighted, gated), measured by `pyloudnorm`. True peak follows
BS.1770's annex: the peak of the signal oversampled 4x, which catches the inter-sample overs that a
lossy encoder or a DAC would turn into clipping.

Reaching the target loudness can push the true peak over the ceiling (music with a high crest
factor), so the one algorithm written here is a look-ahead peak limiter: per-sample gain is the
ceiling over the oversampled envelope, held for the look-ahead window (so reduction starts before
the peak) and released smoothly. Gain and limiting alternate a few times until the loudness is on
target and the true peak under the ceiling.
"""

from __future__ import annotations

import numpy as np
import pyloudnorm
import scipy.ndimage
import scipy.signal

from charforge.errors import InvalidInput

DEFAULT_TARGET_LUFS = -16.0
DEFAULT_CEILING_DBTP = -1.0
OVERSAMPLE = 4
LOOKAHEAD_SECONDS = 0.005
RELEASE_SECONDS = 0.05
# BS.1770's gate needs at least one 400 ms block
MIN_SECONDS = 0.4


def _mono(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    y = np.asarray(samples, dtype=np.float64)
    if y.ndim != 1:
        raise InvalidInput(f"expected mono samples (1-D array), got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise InvalidInput("samples contain NaN or infinity")
    if sample_rate <= 0:
        raise InvalidInput(f"sample rate must be positive, got {sample_rate}")
    if y.size < MIN_SECONDS * sample_rate:
        raise InvalidInput(f"loudness needs at least {MIN_SECONDS} s of audio, got {y.size / sample_rate:.3f} s")
    return y


def integrated_loudness(samples: np.ndarray, sample_rate: int) -> float:
    """BS.1770 integrated loudness in LUFS (-inf for digital silence)."""
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(_mono(samples, sample_rate)))


def _envelope(y: np.ndarray) -> np.ndarray:
    """|signal| oversampled 4x (polyphase FIR), folded back to the original rate by taking each
    sample's largest of its 4 sub-samples."""
    up = scipy.signal.resample_poly(y, OVERSAMPLE, 1)
    return np.abs(up[: y.size * OVERSAMPLE]).reshape(y.size, OVERSAMPLE).max(axis=1)


def true_peak_dbtp(samples: np.ndarray, sample_rate: int) -> float:
    """True peak (4x oversampled) in dB relative to full scale."""
    peak = float(_envelope(_mono(samples, sample_rate)).max())
    return 20 * np.log10(peak) if peak > 0 else -np.inf


def limit(samples: np.ndarray, sample_rate: int, ceiling_dbtp: float = DEFAULT_CEILING_DBTP) -> np.ndarray:
    """Look-ahead limiter: the true peak ends at or below `ceiling_dbtp`, the rest of the signal as is."""
    y = _mono(samples, sample_rate)
    ceiling = 10 ** (ceiling_dbtp / 20)
    need = np.minimum(1.0, ceiling / np.maximum(_envelope(y), 1e-12))
    hold = max(1, int(LOOKAHEAD_SECONDS * sample_rate))
    # the gain a sample needs is the smallest needed anywhere in its look-ahead window...
    gain = scipy.ndimage.minimum_filter1d(need, size=2 * hold + 1, mode="nearest")
    # ...then released smoothly (one-pole, run both ways so the gain never rises above what is held)
    alpha = np.exp(-1.0 / (RELEASE_SECONDS * sample_rate))
    smooth = scipy.signal.lfilter([1 - alpha], [1, -alpha], gain, zi=[gain[0] * alpha])[0]
    smooth = scipy.signal.lfilter([1 - alpha], [1, -alpha], smooth[::-1], zi=[smooth[-1] * alpha])[0][::-1]
    return y * np.minimum(gain, smooth)


def normalize_loudness(
    samples: np.ndarray, sample_rate: int, target_lufs: float = DEFAULT_TARGET_LUFS,
    ceiling_dbtp: float = DEFAULT_CEILING_DBTP,
) -> np.ndarray:
    """`samples` at `target_lufs` integrated loudness with a true peak <= `ceiling_dbtp` (float32).

    Silence stays silence. Raises when the ceiling makes the target unreachable (a target louder than
    the ceiling allows for any music).
    """
    if not -70.0 <= target_lufs <= -5.0:
        raise InvalidInput(f"target loudness must be in [-70, -5] LUFS, got {target_lufs}")
    if not -20.0 <= ceiling_dbtp <= 0.0:
        raise InvalidInput(f"true-peak ceiling must be in [-20, 0] dBTP, got {ceiling_dbtp}")
    y = _mono(samples, sample_rate)
    meter = pyloudnorm.Meter(sample_rate)
    for _ in range(6):
        current = meter.integrated_loudness(y)
        if not np.isfinite(current):
            return y.astype(np.float32)  # silence (or below the absolute gate)
        y = limit(y * 10 ** ((target_lufs - current) / 20), sample_rate, ceiling_dbtp - 0.05)
        if abs(meter.integrated_loudness(y) - target_lufs) <= 0.1:
            return y.astype(np.float32)
    reached = meter.integrated_loudness(y)
    if abs(reached - target_lufs) > 0.5:
        raise InvalidInput(f"cannot reach {target_lufs} LUFS under a {ceiling_dbtp} dBTP ceiling (got {reached:.1f})")
    return y.astype(np.float32)
