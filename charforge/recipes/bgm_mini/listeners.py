"""Independent listener-proxies for judging BGM: key/mode estimators and tempo trackers.

These deliberately share no code with the training-data generator (`music.py`) or with the
runtime's own `charforge.audio.analysis`: a judge built from the generator's own notion of a key
would only check that the generator agrees with itself. Everything here is the textbook recipe with
library defaults (librosa's `chroma_cqt` averaged over the clip, correlated with the 24 rotations of
published key profiles; librosa's beat tracker and its tempogram estimate), not tuned to the
procedural music. essentia's `KeyExtractor` joins as a further key estimator when it is installed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import librosa
import numpy as np

log = logging.getLogger(__name__)

PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

# Published probe-tone / corpus profiles, tonic first (major, minor).
PROFILES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # Krumhansl & Kessler (1982)
    "kk": ((6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88),
           (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)),
    # Temperley (1999, "What's key for key?")
    "temperley": ((5.0, 2.0, 3.5, 2.0, 4.5, 4.0, 2.0, 4.5, 2.0, 3.5, 1.5, 4.0),
                  (5.0, 2.0, 3.5, 4.5, 2.0, 4.0, 2.0, 4.5, 3.5, 2.0, 1.5, 4.0)),
}


@dataclass(frozen=True)
class Key:
    tonic: int
    mode: str  # "major" | "minor"
    score: float

    @property
    def name(self) -> str:
        return f"{PITCH_CLASSES[self.tonic]} {self.mode}"


def mean_chroma(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """librosa's constant-Q chroma with its defaults, averaged over time."""
    chroma = librosa.feature.chroma_cqt(y=np.asarray(samples, dtype=np.float32), sr=sample_rate)
    return chroma.mean(axis=1)


def profile_key(chroma: np.ndarray, profile: str) -> Key:
    """Best of the 24 keys by Pearson correlation of the mean chroma with the rotated profile."""
    major, minor = (np.asarray(p, dtype=np.float64) for p in PROFILES[profile])
    best = Key(0, "major", -np.inf)
    for mode, template in (("major", major), ("minor", minor)):
        for tonic in range(12):
            r = float(np.corrcoef(chroma, np.roll(template, tonic))[0, 1])
            if r > best.score:
                best = Key(tonic, mode, r)
    return best


@functools.cache
def _essentia_extractors() -> dict[str, Callable[[np.ndarray], Key]]:
    try:
        import essentia.standard as es  # optional extra: pip install charforge[eval]
    except ImportError:
        return {}
    out: dict[str, Callable[[np.ndarray], Key]] = {}
    for profile in ("edma", "krumhansl", "temperley"):
        extractor = es.KeyExtractor(profileType=profile, sampleRate=44100)

        def run(y44: np.ndarray, extractor=extractor) -> Key:
            key, scale, strength = extractor(y44.astype(np.float32))
            names = {n: i for i, n in enumerate(PITCH_CLASSES)} | {"C#": 1, "Db": 1, "D#": 3, "F#": 6, "Gb": 6,
                                                                   "G#": 8, "A#": 10, "Eb": 3, "Ab": 8, "Bb": 10}
            return Key(names[key], str(scale), float(strength))

        out[f"essentia-{profile}"] = run
    return out


def key_estimators() -> list[str]:
    """Names of the key estimators available on this machine (essentia's only when installed)."""
    return ["kk-chroma_cqt", "temperley-chroma_cqt", *_essentia_extractors()]


def estimate_keys(samples: np.ndarray, sample_rate: int) -> dict[str, Key]:
    """Every available estimator's key for one clip."""
    chroma = mean_chroma(samples, sample_rate)
    keys = {"kk-chroma_cqt": profile_key(chroma, "kk"), "temperley-chroma_cqt": profile_key(chroma, "temperley")}
    extra = _essentia_extractors()
    if extra:
        y44 = librosa.resample(np.asarray(samples, dtype=np.float32), orig_sr=sample_rate, target_sr=44100)
        keys.update({name: run(y44) for name, run in extra.items()})
    return keys


# -- tempo ----------------------------------------------------------------------------------------

def beat_track_bpm(samples: np.ndarray, sample_rate: int) -> float:
    """librosa's dynamic-programming beat tracker (Ellis 2007), default settings."""
    tempo, _ = librosa.beat.beat_track(y=np.asarray(samples, dtype=np.float32), sr=sample_rate)
    return float(np.atleast_1d(tempo)[0])


def tempogram_bpm(samples: np.ndarray, sample_rate: int) -> float:
    """librosa's tempogram estimate (`feature.tempo`: autocorrelation tempogram of the onset envelope,
    weighted by its default log-normal prior), a global-periodicity principle rather than beat placement."""
    tempo = librosa.feature.tempo(y=np.asarray(samples, dtype=np.float32), sr=sample_rate)
    return float(np.atleast_1d(tempo)[0])


TEMPO_TRACKERS: dict[str, Callable[[np.ndarray, int], float]] = {
    "beat_track": beat_track_bpm,
    "tempogram": tempogram_bpm,
}
