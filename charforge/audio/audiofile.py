"""Reading and writing audio files with soundfile, atomically and never clipped."""

from __future__ import annotations

import io
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from charforge.audio.levels import DEFAULT_PEAK, limit_peak
from charforge.errors import InvalidInput, NotFound
from charforge.files import atomic_write

# Suffix -> (libsndfile format, subtype). OGG is only offered when the linked libsndfile has Vorbis.
_FORMATS: dict[str, tuple[str, str]] = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
}


def writable_suffixes() -> list[str]:
    """File suffixes this machine's libsndfile can write."""
    return [s for s, (fmt, sub) in _FORMATS.items() if sf.check_format(fmt, sub)]


def _format(suffix: str, what: str) -> tuple[str, str]:
    suffix = suffix.lower()
    if suffix not in _FORMATS:
        raise InvalidInput(f"unsupported audio suffix {suffix!r} for {what}; use one of {sorted(_FORMATS)}")
    fmt, subtype = _FORMATS[suffix]
    if not sf.check_format(fmt, subtype):
        raise InvalidInput(f"this libsndfile cannot write {fmt}/{subtype}; use one of {writable_suffixes()}")
    return fmt, subtype


def audio_bytes(samples: np.ndarray, sample_rate: int, suffix: str = ".wav") -> bytes:
    """The encoded file as bytes (for content-addressed assets), peak-safe like `write_audio`."""
    fmt, subtype = _format(suffix, "in-memory audio")
    if sample_rate <= 0:
        raise InvalidInput(f"sample rate must be positive, got {sample_rate}")
    buffer = io.BytesIO()
    sf.write(buffer, limit_peak(samples, ceiling=DEFAULT_PEAK), sample_rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def write_audio(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write mono samples to WAV/FLAC/OGG (chosen by suffix) via a temp file + rename.

    The rename means a reader never sees a half-written file and an error never leaves debris.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    fmt, subtype = _format(suffix, path.name)
    if sample_rate <= 0:
        raise InvalidInput(f"sample rate must be positive, got {sample_rate}")
    y = limit_peak(samples, ceiling=DEFAULT_PEAK)  # lossy encoders overshoot a full-scale input
    if not path.parent.is_dir():
        raise NotFound(f"output folder {path.parent} does not exist")
    return atomic_write(path, lambda stream: sf.write(stream, y, sample_rate, format=fmt, subtype=subtype))


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Load a file as mono float32 at `sample_rate` (mixing down and resampling as needed)."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"audio file {path} does not exist")
    try:
        data, file_rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise InvalidInput(f"cannot read {path.name} as audio: {exc}") from exc
    y = data.mean(axis=1)
    if file_rate != sample_rate:
        y = librosa.resample(y, orig_sr=file_rate, target_sr=sample_rate)
    return np.ascontiguousarray(y, dtype=np.float32)
