"""Measuring music the way the BGM evaluation does: key/mode from chroma, tempo from onsets.

These are the yardsticks for "does the model's minor-key request come out minor" and "is the
high-arousal clip faster", so they live in the library (not in a test) and are themselves tested
on procedural clips whose key and tempo are known.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

from charforge.audio.theory import NOTE_NAMES, Mode
from charforge.errors import InvalidInput

# Krumhansl & Kessler (1982) probe-tone ratings, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

CHROMA_HOP = 512
# Harmony is read from C3 up (131 Hz - 4 kHz). Below it sit kick-drum tails, whose falling pitch
# votes for whatever pitch class it ends on, and the bass, which plays roots and fifths (no mode
# information) yet, being the loudest note of its frame, sets each frame's chroma normalisation;
# the `mini` codec also resolves pitch there only to a few semitones.
CHROMA_FMIN_HZ = float(librosa.note_to_hz("C3"))
CHROMA_OCTAVES = 5
BEAT_BAND_HZ = 200.0
TEMPO_HOP = 256
BEAT_BAND_MELS = 16


@dataclass(frozen=True)
class KeyEstimate:
    tonic: int
    mode: Mode
    correlation: float  # Pearson r of the averaged chroma with the winning rotated profile
    mode_margin: float  # best r in the winning mode minus best r in the other mode

    @property
    def name(self) -> str:
        return f"{NOTE_NAMES[self.tonic]} {self.mode}"


def _checked(samples: np.ndarray, sample_rate: int, min_seconds: float) -> np.ndarray:
    y = np.asarray(samples, dtype=np.float32)
    if y.ndim != 1:
        raise InvalidInput(f"expected mono samples (1-D array), got shape {y.shape}")
    if y.size < min_seconds * sample_rate:
        raise InvalidInput(f"need at least {min_seconds} s of audio to analyse, got {y.size / sample_rate:.2f} s")
    if not np.all(np.isfinite(y)) or not np.any(y):
        raise InvalidInput("audio is silent or contains NaN/infinity")
    return y


def mean_chroma(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Time-averaged constant-Q chroma (12 values, C first) of the harmonic part of the audio.

    Drums are removed first (librosa's median-filter HPSS): every chroma frame is normalised to
    its maximum, so frames holding only a kick or a hi-hat would otherwise add a flat floor that
    drowns the one note, the third, that decides the mode.
    """
    y = librosa.effects.harmonic(_checked(samples, sample_rate, 0.5))
    chroma = librosa.feature.chroma_cqt(
        y=y, sr=sample_rate, hop_length=CHROMA_HOP, fmin=CHROMA_FMIN_HZ, n_octaves=CHROMA_OCTAVES,
    )
    return chroma.mean(axis=1)


def key_from_chroma(chroma: np.ndarray) -> KeyEstimate:
    """Best of the 24 rotated Krumhansl-Kessler profiles by Pearson correlation."""
    chroma = np.asarray(chroma, dtype=np.float64)
    if chroma.shape != (12,):
        raise InvalidInput(f"expected 12 chroma values, got shape {chroma.shape}")
    scores = {
        mode: np.array([np.corrcoef(chroma, np.roll(profile, tonic))[0, 1] for tonic in range(12)])
        for mode, profile in (("major", KK_MAJOR), ("minor", KK_MINOR))
    }
    mode: Mode = "major" if scores["major"].max() >= scores["minor"].max() else "minor"
    other = "minor" if mode == "major" else "major"
    tonic = int(np.argmax(scores[mode]))
    return KeyEstimate(
        tonic=tonic, mode=mode, correlation=float(scores[mode][tonic]),
        mode_margin=float(scores[mode].max() - scores[other].max()),
    )


def estimate_key(samples: np.ndarray, sample_rate: int) -> KeyEstimate:
    return key_from_chroma(mean_chroma(samples, sample_rate))


def estimate_tempo(samples: np.ndarray, sample_rate: int) -> float:
    """Tempo in BPM: librosa's onset-autocorrelation estimator on the low band only.

    In BGM the beat lives in the kick and bass. Over the full band every arpeggio note makes as
    much spectral flux as a beat (the flux is log-compressed), so the autocorrelation has equal
    peaks at every multiple of the note period and librosa's 120 bpm prior picks whichever multiple
    is nearest (157 bpm eighths read as 105). Below ~200 Hz only the beat-carrying parts remain.
    The hop is finer than librosa's default because drum onsets are one frame wide: with a beat of
    16.5 frames, lag 16 matches every other kick and the two-beat lag (33) wins.
    """
    y = _checked(samples, sample_rate, 2.0)
    onset = librosa.onset.onset_strength(
        y=y, sr=sample_rate, hop_length=TEMPO_HOP, n_mels=BEAT_BAND_MELS, fmax=BEAT_BAND_HZ,
    )
    tempo = librosa.feature.tempo(onset_envelope=onset, sr=sample_rate, hop_length=TEMPO_HOP)
    return float(tempo[0])
