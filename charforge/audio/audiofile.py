"""Reading and writing audio files with soundfile, atomically and never clipped; game loop points.

A looped clip carries its loop where game engines look for it: `LOOPSTART` / `LOOPLENGTH` Vorbis
comments (in samples) in OGG and FLAC files, as RPG Maker, Ren'Py and many engines read them
(written with `mutagen`, since libsndfile only writes a fixed set of tags), and for every format
a JSON sidecar `<file>.json` with the sample-accurate loop and the measured loudness.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
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


@dataclass(frozen=True)
class LoopPoints:
    """A loop in samples: play [start, start + length), then jump back to start."""

    start: int
    length: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.length < 1:
            raise InvalidInput(f"loop needs start >= 0 and length >= 1 samples, got {self.start}, {self.length}")


def formats() -> list[str]:
    """Format names (`wav`, `flac`, `ogg`) this machine's libsndfile can write."""
    return [s.lstrip(".") for s in writable_suffixes()]


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


def _tag_loop(buffer: io.BytesIO, suffix: str, loop: LoopPoints) -> None:
    """Add LOOPSTART/LOOPLENGTH Vorbis comments to an encoded OGG/FLAC file held in `buffer`."""
    from mutagen.flac import FLAC
    from mutagen.oggvorbis import OggVorbis

    buffer.seek(0)
    tagged = OggVorbis(buffer) if suffix == ".ogg" else FLAC(buffer)
    tagged["LOOPSTART"] = str(loop.start)
    tagged["LOOPLENGTH"] = str(loop.length)
    buffer.seek(0)
    tagged.save(buffer)


def audio_bytes(samples: np.ndarray, sample_rate: int, suffix: str = ".wav", loop: LoopPoints | None = None) -> bytes:
    """The encoded file as bytes (for content-addressed assets), peak-safe like `write_audio`;
    with `loop`, OGG and FLAC carry LOOPSTART/LOOPLENGTH tags (WAV has no standard loop tag libsndfile writes)."""
    suffix = suffix.lower()
    fmt, subtype = _format(suffix, "in-memory audio")
    if sample_rate <= 0:
        raise InvalidInput(f"sample rate must be positive, got {sample_rate}")
    y = limit_peak(samples, ceiling=DEFAULT_PEAK)
    if loop is not None and loop.start + loop.length > y.size:
        raise InvalidInput(f"loop {loop.start}+{loop.length} runs past the clip's {y.size} samples")
    buffer = io.BytesIO()
    sf.write(buffer, y, sample_rate, format=fmt, subtype=subtype)
    if loop is not None and suffix in (".ogg", ".flac"):
        _tag_loop(buffer, suffix, loop)
    return buffer.getvalue()


def sidecar_path(path: str | Path) -> Path:
    """Where the JSON sidecar of an audio file lives: `track.ogg` -> `track.ogg.json`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def sidecar(n_samples: int, sample_rate: int, loop: LoopPoints | None, **extra: object) -> dict[str, object]:
    """What the sidecar says: length, rate, the sample-accurate loop (if any) and `extra` facts."""
    data: dict[str, object] = {"sample_rate": int(sample_rate), "samples": int(n_samples),
                               "seconds": round(n_samples / sample_rate, 6)}
    if loop is not None:
        data["loop"] = {**asdict(loop), "end": loop.start + loop.length}
    return data | extra


def write_game_audio(path: str | Path, samples: np.ndarray, sample_rate: int, loop: LoopPoints | None = None,
                     **extra: object) -> Path:
    """Write a clip for a game: the audio file (loop-tagged when it is OGG/FLAC and `loop` is given)
    and its JSON sidecar, both atomically."""
    path = Path(path)
    if not path.parent.is_dir():
        raise NotFound(f"output folder {path.parent} does not exist")
    data = audio_bytes(samples, sample_rate, path.suffix, loop)
    atomic_write(path, data)
    write_json(sidecar_path(path), sidecar(np.asarray(samples).size, sample_rate, loop, **extra))
    return path


def write_json(path: Path, data: dict[str, object]) -> None:
    """A sidecar (or any small JSON file), written atomically."""
    atomic_write(path, json.dumps(data, indent=2).encode())


def read_loop(path: str | Path) -> LoopPoints | None:
    """The LOOPSTART/LOOPLENGTH tags of an OGG/FLAC file (None when it has none)."""
    import mutagen

    tagged = mutagen.File(str(path))
    if tagged is None or tagged.tags is None or "LOOPSTART" not in tagged or "LOOPLENGTH" not in tagged:
        return None
    return LoopPoints(int(tagged["LOOPSTART"][0]), int(tagged["LOOPLENGTH"][0]))


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
