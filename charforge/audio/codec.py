"""Spectrogram images: waveform <-> mel magnitude <-> 8-bit image, under named presets.

A spectrogram is an image so that BGM can reuse the whole image engine (inversion, img2img,
attention control). The image convention is riffusion's, so riffusion checkpoints decode here:
magnitude mel / max, raised to a power < 1 (compresses dynamic range into 8 bits), inverted so
loud is dark, and flipped so low frequencies sit at the bottom.

Decoding cannot recover phase: mel -> linear magnitude by non-negative least squares, then
librosa's Griffin-Lim with an explicit seed. librosa's `mel_to_audio` has no seed argument, and
without one the same image would give different samples on every call, breaking the state cache.

The NNLS step is the one piece written here rather than taken from librosa: `mel_to_stft` hands
L-BFGS-B a history as long as the FFT (n_fft / 2 + 1 vectors of frames x bins), which needs 155 GiB
for the riffusion preset and ~4 GB / tens of seconds for `mini`. Mel filters are non-negative
triangles, so the classic multiplicative update for non-negative least squares on a sparse filter
matrix reaches the same residual in milliseconds (benchmarks/bench_bgm_codec.py times both).
"""

from __future__ import annotations

import functools
import logging
import tomllib
from importlib import resources
from typing import Literal

import librosa
import numpy as np
import scipy.sparse
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from charforge.audio.levels import DEFAULT_PEAK, limit_peak, normalize_peak
from charforge.errors import InvalidInput, NotFound

logger = logging.getLogger(__name__)


class SpectrogramPreset(BaseModel):
    """Geometry and scaling of one spectrogram-image convention (see presets.toml)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    sample_rate: int = Field(gt=0)
    n_fft: int = Field(gt=0)
    hop_length: int = Field(gt=0)
    win_length: int = Field(gt=0)
    n_mels: int = Field(gt=0)
    f_min: float = Field(ge=0)
    f_max: float = Field(gt=0)
    width: int = Field(gt=0, description="frames (image columns) in one image tile")
    power_for_image: float = Field(gt=0, le=1)
    scale: Literal["peak", "fixed"]
    max_value: float = Field(gt=0)
    nnls_iters: int = Field(gt=0, description="max multiplicative-update steps for mel -> linear")
    griffin_lim_iters: int = Field(gt=0)
    momentum: float = Field(ge=0, le=1)
    pad_mode: Literal["reflect", "constant"] = "reflect"

    @model_validator(mode="after")
    def _consistent(self) -> SpectrogramPreset:
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} exceeds n_fft {self.n_fft}")
        if not self.f_min < self.f_max <= self.sample_rate / 2:
            raise ValueError(f"need f_min < f_max <= Nyquist ({self.sample_rate / 2} Hz)")
        return self

    @property
    def samples_per_image(self) -> int:
        return self.width * self.hop_length

    @property
    def seconds_per_image(self) -> float:
        return self.samples_per_image / self.sample_rate


@functools.cache
def _preset_table() -> dict[str, dict]:
    text = resources.files("charforge.audio").joinpath("presets.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    return sorted(_preset_table())


def get_preset(name: str) -> SpectrogramPreset:
    """Look up a shipped preset by name."""
    table = _preset_table()
    if name not in table:
        raise NotFound(f"unknown spectrogram preset {name!r}; known presets: {', '.join(sorted(table))}")
    try:
        return SpectrogramPreset(name=name, **table[name])
    except ValidationError as exc:  # a broken shipped table is a packaging bug, but say which field
        raise InvalidInput(f"spectrogram preset {name!r} is invalid: {exc.errors()[0]['msg']}") from exc


class _MelBasis:
    """A preset's mel filter bank as sparse matrices, built once per preset."""

    def __init__(self, p: SpectrogramPreset) -> None:
        dense = librosa.filters.mel(
            sr=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmin=p.f_min, fmax=p.f_max, htk=True, norm=None,
        ).astype(np.float64)
        self.forward = scipy.sparse.csr_matrix(dense)
        self.backward = scipy.sparse.csr_matrix(dense.T)
        self.band_gain = dense.sum(axis=1)  # response of each band to a flat spectrum
        self.cover = dense.sum(axis=0)  # how much filter weight each FFT bin receives

    def to_linear(self, mel: np.ndarray, max_iters: int, tol: float = 1e-2) -> np.ndarray:
        """Non-negative X with forward @ X ~= mel (relative residual `tol`, or `max_iters` steps).

        Starts from each FFT bin's filter-weighted share of its bands (already non-negative and
        close), then Lee-Seung multiplicative updates, which keep X >= 0 without any projection.
        """
        eps = 1e-12
        m = mel.astype(np.float64)
        x = self.backward @ (m / np.maximum(self.band_gain, eps)[:, None])
        x /= np.maximum(self.cover, eps)[:, None]
        target = self.backward @ m
        norm = np.linalg.norm(m) + eps
        for step in range(max_iters):
            if step % 10 == 0 and np.linalg.norm(self.forward @ x - m) <= tol * norm:
                break
            x *= target / (self.backward @ (self.forward @ x) + eps)
        return x.astype(np.float32)


@functools.lru_cache(maxsize=8)
def _mel_basis(p: SpectrogramPreset) -> _MelBasis:
    return _MelBasis(p)


def _image_darkness(image: Image.Image | np.ndarray, n_mels: int) -> np.ndarray:
    """Pixel darkness in [0, 1] with row 0 = lowest mel bin (undoing the flip and inversion)."""
    if isinstance(image, Image.Image):
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
    else:
        arr = np.asarray(image)
        if arr.ndim == 3 and arr.shape[2] in (3, 4):
            arr = np.asarray(Image.fromarray(arr.astype(np.uint8)).convert("L"))
        if arr.ndim != 2:
            raise InvalidInput(f"expected a grey or RGB image array, got shape {arr.shape}")
        pixels = arr.astype(np.float32)
    if pixels.shape[0] != n_mels:
        raise InvalidInput(f"image is {pixels.shape[0]} px tall but the preset has {n_mels} mel bins")
    if pixels.shape[1] < 1:
        raise InvalidInput("image has no columns")
    return (255.0 - pixels[::-1]) / 255.0


class SpectrogramCodec:
    """Converts between mono waveforms and spectrogram images under one preset."""

    def __init__(self, preset: str | SpectrogramPreset = "mini") -> None:
        self.preset = get_preset(preset) if isinstance(preset, str) else preset

    # -- waveform -> image -------------------------------------------------------------------

    def mel(self, samples: np.ndarray) -> np.ndarray:
        """Magnitude mel spectrogram, one column per `hop_length` samples (len // hop columns).

        Dropping the centred STFT's trailing frame makes tiling exact: W columns <-> W * hop samples.
        """
        p = self.preset
        y = np.asarray(samples, dtype=np.float32)
        if y.ndim != 1:
            raise InvalidInput(f"expected mono samples (1-D array), got shape {y.shape}")
        if y.size < p.hop_length:
            raise InvalidInput(f"need at least {p.hop_length} samples for one column, got {y.size}")
        if not np.all(np.isfinite(y)):
            raise InvalidInput("samples contain NaN or infinity")
        mel = librosa.feature.melspectrogram(
            y=y, sr=p.sample_rate, n_fft=p.n_fft, hop_length=p.hop_length, win_length=p.win_length,
            window="hann", center=True, pad_mode=p.pad_mode, power=1.0,
            n_mels=p.n_mels, fmin=p.f_min, fmax=p.f_max, htk=True, norm=None,
        )
        return mel[:, : y.size // p.hop_length].astype(np.float32)

    def mel_to_image(self, mel: np.ndarray) -> Image.Image:
        """8-bit greyscale image: loud = dark, low frequencies at the bottom."""
        p = self.preset
        mel = np.asarray(mel, dtype=np.float32)
        if mel.ndim != 2 or mel.shape[0] != p.n_mels:
            raise InvalidInput(f"expected a ({p.n_mels}, frames) mel array, got shape {mel.shape}")
        ref = float(mel.max()) if p.scale == "peak" else p.max_value
        level = np.clip(mel / ref, 0.0, 1.0) if ref > 0 else np.zeros_like(mel)
        if p.scale == "fixed" and float(mel.max()) > p.max_value:
            logger.debug("mel peak %.1f exceeds preset %s max_value %.1f: clipped", mel.max(), p.name, p.max_value)
        darkness = np.power(level, p.power_for_image)
        pixels = np.round(255.0 - 255.0 * darkness)[::-1]
        return Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))

    def audio_to_image(self, samples: np.ndarray) -> Image.Image:
        return self.mel_to_image(self.mel(samples))

    # -- image -> waveform -------------------------------------------------------------------

    def image_to_mel(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """Mel magnitudes from an image (grey or RGB); absolute scale is the preset's max_value."""
        p = self.preset
        darkness = _image_darkness(image, p.n_mels)
        return (np.power(darkness, 1.0 / p.power_for_image) * p.max_value).astype(np.float32)

    def mel_to_linear(self, mel: np.ndarray) -> np.ndarray:
        """Non-negative linear STFT magnitudes (n_fft / 2 + 1 rows) whose mel projection is `mel`."""
        return _mel_basis(self.preset).to_linear(np.asarray(mel, dtype=np.float32), self.preset.nnls_iters)

    def mel_to_audio(self, mel: np.ndarray, seed: int, high_band: float = 0.0) -> np.ndarray:
        """Waveform from mel magnitudes: NNLS to linear STFT magnitude, then seeded Griffin-Lim.

        `high_band` > 0 fills the STFT above the preset's `f_max` by octave replication (see
        `replicate_octaves`), each octave that many times the one below.
        """
        p = self.preset
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise InvalidInput(f"seed must be a non-negative integer, got {seed!r}")
        mel = np.asarray(mel, dtype=np.float32)
        if mel.ndim != 2 or mel.shape[0] != p.n_mels:
            raise InvalidInput(f"expected a ({p.n_mels}, frames) mel array, got shape {mel.shape}")
        n_samples = mel.shape[1] * p.hop_length
        if not np.any(mel > 0):
            return np.zeros(n_samples, dtype=np.float32)
        # The encoder dropped the centred STFT's trailing frame; Griffin-Lim's re-analysis of W * hop
        # samples has it again, so stand in for it with a copy of the last column.
        mel = np.concatenate([mel, mel[:, -1:]], axis=1)
        linear = self.mel_to_linear(mel)
        if high_band > 0:
            linear = replicate_octaves(linear, p, high_band)
        y = librosa.griffinlim(
            linear, n_iter=p.griffin_lim_iters, hop_length=p.hop_length, win_length=p.win_length,
            n_fft=p.n_fft, window="hann", center=True, length=n_samples, pad_mode=p.pad_mode,
            momentum=p.momentum, init="random", random_state=np.random.default_rng(int(seed)),
        )
        if p.scale == "peak":
            return normalize_peak(y, DEFAULT_PEAK)
        return limit_peak(y, DEFAULT_PEAK)

    def image_to_audio(self, image: Image.Image | np.ndarray, seed: int = 0, high_band: float = 0.0) -> np.ndarray:
        return self.mel_to_audio(self.image_to_mel(image), seed=seed, high_band=high_band)


def replicate_octaves(linear: np.ndarray, p: SpectrogramPreset, gain: float) -> np.ndarray:
    """Linear STFT magnitudes with the band above `f_max` filled from an octave below, times `gain`.

    A cheap bandwidth extension for band-limited presets (spectral band replication, as HE-AAC does,
    but by exact octaves): bin f above `f_max` takes the magnitude at f / 2, so a harmonic partial
    lands on a partial of the same pitch class and a drum hit keeps its timing. Octaves above repeat.
    """
    if not 0 < gain <= 1:
        raise InvalidInput(f"high-band gain must be in (0, 1], got {gain!r}")
    freqs = librosa.fft_frequencies(sr=p.sample_rate, n_fft=p.n_fft)
    out = np.array(linear, dtype=np.float32, copy=True)
    for index in np.flatnonzero(freqs > p.f_max):
        half = freqs[index] / 2
        low = int(np.floor(half / freqs[1]))
        frac = half / freqs[1] - low
        out[index] = gain * ((1 - frac) * out[low] + frac * out[min(low + 1, out.shape[0] - 1)])
    return out
