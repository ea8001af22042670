"""Spectrogram codec: riffusion geometry, round-trip error bounds, seeded determinism, file output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from charforge.audio import analysis
from charforge.audio.audiofile import read_audio, writable_suffixes, write_audio
from charforge.audio.codec import SpectrogramCodec, get_preset, preset_names
from charforge.errors import InvalidInput, NotFound
from charforge.recipes.bgm_mini import listeners, music


def _htk_mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def _tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _known_signal(sr: int, n: int) -> np.ndarray:
    """A chord whose notes enter at different times with a tremolo: structure in both axes."""
    t = np.arange(n) / sr
    y = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t))
    y += 0.2 * np.sin(2 * np.pi * 330 * t) * (t > 0.5)
    y += 0.15 * np.sin(2 * np.pi * 1320 * t) * (t < 1.0)
    return y.astype(np.float32)


def test_riffusion_preset_matches_riffusion_numbers() -> None:
    p = get_preset("riffusion")
    assert (p.sample_rate, p.hop_length, p.win_length, p.n_fft) == (44100, 441, 4410, 17640)
    assert (p.n_mels, p.f_min, p.f_max, p.width) == (512, 0.0, 10000.0, 512)
    assert p.power_for_image == 0.25 and p.scale == "peak"
    assert p.seconds_per_image == pytest.approx(5.12)
    assert {"riffusion", "mini"} <= set(preset_names())


@pytest.mark.slow
def test_riffusion_image_geometry_and_orientation() -> None:
    codec = SpectrogramCodec("riffusion")
    p = codec.preset
    y = _tone(200.0, p.seconds_per_image, p.sample_rate) + _tone(5000.0, p.seconds_per_image, p.sample_rate, 0.05)
    image = codec.audio_to_image(y)
    assert image.size == (512, 512)
    pixels = np.asarray(image, dtype=np.float64)
    # Mel bin i is centred at (i + 1) / (n_mels + 1) of the HTK mel range; row 0 is the top.
    def expected_row(hz: float) -> float:
        return (p.n_mels - 1) - (_htk_mel(hz) / _htk_mel(p.f_max) * (p.n_mels + 1) - 1)
    darkest = pixels.mean(axis=1)
    low_row = int(np.argmin(darkest))
    assert abs(low_row - expected_row(200.0)) <= 2
    assert low_row > 0.85 * p.n_mels  # low frequencies near the bottom
    high_rows = darkest[: int(expected_row(1000.0))]
    assert abs(int(np.argmin(high_rows)) - expected_row(5000.0)) <= 3  # the quieter, higher tone above it
    # Loud = dark: the loudest bin is black (peak scaling), the 20 dB quieter tone lighter, and
    # bins away from both tones nearly white.
    assert pixels.min() == 0.0 and darkest[low_row] < 10
    assert darkest[low_row] < darkest[int(expected_row(5000.0))] < 200
    assert np.median(pixels) >= 240


@pytest.mark.slow
def test_image_width_tiles_exactly_with_hop() -> None:
    codec = SpectrogramCodec("mini")
    p = codec.preset
    y = _known_signal(p.sample_rate, p.samples_per_image)
    assert codec.audio_to_image(y).size == (p.width, p.n_mels)
    image = codec.audio_to_image(y[: 40 * p.hop_length])
    assert image.size == (40, p.n_mels)
    assert codec.image_to_audio(image, seed=0).shape == (40 * p.hop_length,)


@pytest.mark.slow
@pytest.mark.parametrize(("preset", "columns", "mean_bound", "p95_bound"), [("mini", 128, 6.0, 20.0), ("riffusion", 96, 4.0, 16.0)])
def test_known_signal_survives_image_audio_image(preset: str, columns: int, mean_bound: float, p95_bound: float) -> None:
    codec = SpectrogramCodec(preset)
    p = codec.preset
    y = _known_signal(p.sample_rate, columns * p.hop_length)
    first = np.asarray(codec.audio_to_image(y), dtype=np.float64)
    second = np.asarray(codec.audio_to_image(codec.image_to_audio(first.astype(np.uint8), seed=3)), dtype=np.float64)
    # Compare where the first image has content or where the second invented some.
    error = np.abs(first - second)
    assert error.mean() < mean_bound
    assert np.percentile(error, 95) < p95_bound
    # The loud rows stay the loud rows.
    assert np.argmin(first.mean(axis=1)) == np.argmin(second.mean(axis=1))


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["mini", "riffusion"])
def test_mel_to_linear_is_a_non_negative_least_squares_solution(preset: str) -> None:
    import librosa

    codec = SpectrogramCodec(preset)
    p = codec.preset
    mel = codec.mel(_known_signal(p.sample_rate, 48 * p.hop_length))
    linear = codec.mel_to_linear(mel)
    basis = librosa.filters.mel(
        sr=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmin=p.f_min, fmax=p.f_max, htk=True, norm=None,
    )
    assert linear.shape == (p.n_fft // 2 + 1, mel.shape[1]) and linear.min() >= 0
    assert np.linalg.norm(basis @ linear - mel) <= 0.02 * np.linalg.norm(mel)


@pytest.mark.slow
def test_same_image_and_seed_give_identical_samples() -> None:
    codec = SpectrogramCodec("mini")
    p = codec.preset
    image = codec.audio_to_image(_known_signal(p.sample_rate, 48 * p.hop_length))
    a = codec.image_to_audio(image, seed=11)
    b = codec.image_to_audio(image.copy(), seed=11)
    c = codec.image_to_audio(image, seed=12)
    assert np.array_equal(a, b)
    assert np.max(np.abs(a - c)) > 0.05 * np.max(np.abs(a))


@pytest.mark.slow
def test_rgb_image_decodes_like_grey() -> None:
    codec = SpectrogramCodec("mini")
    p = codec.preset
    grey = codec.audio_to_image(_known_signal(p.sample_rate, 32 * p.hop_length))
    assert np.array_equal(codec.image_to_mel(grey.convert("RGB")), codec.image_to_mel(grey))
    assert np.array_equal(codec.image_to_mel(np.asarray(grey.convert("RGB"))), codec.image_to_mel(grey))


@pytest.mark.slow
def test_fixed_scale_keeps_loudness_and_output_is_peak_safe() -> None:
    codec = SpectrogramCodec("mini")
    p = codec.preset
    y = _known_signal(p.sample_rate, 64 * p.hop_length)
    quiet = codec.image_to_audio(codec.audio_to_image(0.1 * y), seed=0)
    loud = codec.image_to_audio(codec.audio_to_image(0.4 * y), seed=0)
    ratio = np.sqrt(np.mean(loud**2) / np.mean(quiet**2))
    assert 3.2 < ratio < 4.8
    black = Image.new("L", (64, p.n_mels), 0)  # every bin at full scale: would clip without limiting
    assert np.max(np.abs(codec.image_to_audio(black, seed=0))) <= 10 ** (-1 / 20) + 1e-6
    riff = SpectrogramCodec("riffusion")
    faint = riff.image_to_audio(Image.new("L", (48, 512), 250), seed=0)
    assert np.max(np.abs(faint)) == pytest.approx(10 ** (-1 / 20), rel=1e-4)  # peak preset normalises up


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["major", "minor"])
@pytest.mark.parametrize("bpm", [70, 140])
def test_procedural_mode_and_tempo_survive_full_round_trip(mode: str, bpm: int) -> None:
    """What the BGM model can at best reproduce: the `full` codec keeps key, tempo and the top band."""
    codec = SpectrogramCodec("full")
    p = codec.preset
    spec = music.MusicSpec(tonic=9 if mode == "minor" else 0, mode=mode, bpm=bpm, lead="piano", density=0.5, seed=1)
    y = music.render(spec, p.seconds_per_image, p.sample_rate)
    back = codec.image_to_audio(codec.audio_to_image(y), seed=0)
    keys = listeners.estimate_keys(back, p.sample_rate)
    assert {k.mode for k in keys.values()} == {mode}, keys
    # tempo up to an octave (MIREX "accuracy 2"): at 70 bpm with eighth notes the trackers' choice
    # between the beat and its double is a coin toss that Griffin-Lim's smeared transients can flip
    for track in listeners.TEMPO_TRACKERS.values():
        heard = track(back, p.sample_rate)
        assert any(heard == pytest.approx(bpm * f, rel=0.06) for f in (0.5, 1, 2)), (track.__name__, heard)
    power = np.abs(np.fft.rfft(back)) ** 2
    above = power[np.fft.rfftfreq(back.size, 1 / p.sample_rate) > 4000].sum() / power.sum()
    assert above > 1e-3  # the old `mini` preset kept <= 6e-6 of the energy above 3.1 kHz


def test_bad_inputs_raise_one_clear_error() -> None:
    codec = SpectrogramCodec("mini")
    with pytest.raises(InvalidInput, match="mel bins"):
        codec.image_to_audio(Image.new("L", (10, 63)), seed=0)
    with pytest.raises(InvalidInput, match="seed"):
        codec.image_to_audio(Image.new("L", (10, 64)), seed=-1)
    with pytest.raises(InvalidInput, match="mono"):
        codec.audio_to_image(np.zeros((2, 5000), dtype=np.float32))
    with pytest.raises(InvalidInput, match="NaN"):
        codec.audio_to_image(np.full(5000, np.nan, dtype=np.float32))
    with pytest.raises(NotFound, match="riffusion"):
        SpectrogramCodec("no-such-preset")


def test_silent_image_decodes_to_silence() -> None:
    codec = SpectrogramCodec("mini")
    y = codec.image_to_audio(Image.new("L", (8, 64), 255), seed=0)
    assert y.shape == (8 * codec.preset.hop_length,) and not np.any(y)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".wav", ".ogg"])
def test_write_audio_round_trip(tmp_path, suffix: str) -> None:
    if suffix not in writable_suffixes():
        pytest.skip(f"libsndfile here cannot write {suffix}")
    sr = 22050
    y = _tone(440.0, 1.0, sr, amp=1.5)  # over full scale: must be limited, not clipped
    path = write_audio(tmp_path / f"clip{suffix}", y, sr)
    info = sf.info(path)
    assert info.samplerate == sr and info.channels == 1
    back = read_audio(path, sr)
    assert abs(back.size - y.size) <= 2048  # Vorbis may pad the last block
    assert np.max(np.abs(back)) <= 1.0
    assert analysis.mean_chroma(back, sr).argmax() == 9  # still an A
    assert [p.name for p in tmp_path.iterdir()] == [f"clip{suffix}"]  # no temp files left


def test_write_audio_rejects_bad_targets_without_debris(tmp_path) -> None:
    y = np.zeros(100, dtype=np.float32)
    with pytest.raises(InvalidInput, match="suffix"):
        write_audio(tmp_path / "clip.mp4", y, 22050)
    with pytest.raises(NotFound, match="folder"):
        write_audio(tmp_path / "missing" / "clip.wav", y, 22050)
    with pytest.raises(NotFound):
        read_audio(tmp_path / "nothing.wav", 22050)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_octave_replication_fills_the_band_above_f_max_with_the_octave_below() -> None:
    from charforge.audio.codec import replicate_octaves

    p = get_preset("mini")
    rng = np.random.default_rng(0)
    linear = rng.uniform(0, 1, (p.n_fft // 2 + 1, 20)).astype(np.float32)
    freqs = np.arange(linear.shape[0]) * p.sample_rate / p.n_fft
    out = replicate_octaves(linear, p, 0.5)
    below = freqs <= p.f_max
    assert np.array_equal(out[below], linear[below])
    for k in np.flatnonzero(freqs > p.f_max)[::7]:
        if k % 2 == 0:  # an exact octave of a bin: the value there, halved (which may itself be replicated)
            assert np.allclose(out[k], 0.5 * out[k // 2])
    with pytest.raises(InvalidInput, match="gain"):
        replicate_octaves(linear, p, 0.0)


@pytest.mark.slow
def test_a_high_band_adds_energy_above_4khz_and_keeps_the_pitch_class() -> None:
    codec = SpectrogramCodec("mini")
    sr = codec.preset.sample_rate
    t = np.arange(3 * sr) / sr
    tone = sum(np.sin(2 * np.pi * k * 440.0 * t) / k for k in range(1, 7)).astype(np.float32)  # A4, partials to 2.6 kHz
    image = codec.audio_to_image(tone * 0.3)

    def share_above(y, hz=4000.0):
        power = np.abs(np.fft.rfft(y)) ** 2
        return power[np.fft.rfftfreq(y.size, 1 / sr) > hz].sum() / power.sum()

    plain, extended = codec.image_to_audio(image, seed=1), codec.image_to_audio(image, seed=1, high_band=0.5)
    assert share_above(plain) < 1e-4 < 0.01 < share_above(extended)
    import librosa

    chroma = librosa.feature.chroma_stft(y=extended, sr=sr).mean(axis=1)
    assert int(np.argmax(chroma)) == 9  # still A
