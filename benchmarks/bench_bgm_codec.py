"""Spectrogram decoding cost: charforge's sparse multiplicative NNLS against librosa's mel_to_stft.

    python benchmarks/bench_bgm_codec.py [--columns 16] [--repeats 3]

Both solve the same non-negative least squares (mel magnitudes -> linear STFT magnitudes) for the
same image of procedural music under the `mini` preset; prints median times, the speed ratio and
each solution's relative residual |B X - M| / |M|. librosa's L-BFGS keeps a history as long as the
FFT, so its memory grows with columns x n_fft^2 / 4: keep --columns small. Then times a whole
`mini` tile (image -> waveform) and prints the decode realtime factor (seconds of audio per second).
"""

from __future__ import annotations

import argparse
import statistics
import time

import librosa
import numpy as np

from charforge.audio.codec import SpectrogramCodec
from charforge.recipes.bgm_mini import music


def _median_seconds(fn, repeats: int) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--columns", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    codec = SpectrogramCodec("mini")
    p = codec.preset
    spec = music.MusicSpec(tonic=9, mode="minor", bpm=96, lead="piano", density=0.6, seed=1)
    y = music.render(spec, p.seconds_per_image, p.sample_rate)
    mel = codec.image_to_mel(codec.audio_to_image(y))
    part = mel[:, : args.columns].astype(np.float64)
    dense = librosa.filters.mel(
        sr=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmin=p.f_min, fmax=p.f_max, htk=True, norm=None,
    )

    def residual(x: np.ndarray) -> float:
        return float(np.linalg.norm(dense @ x - part) / np.linalg.norm(part))

    t_ours, x_ours = _median_seconds(lambda: codec.mel_to_linear(part), args.repeats)
    t_librosa, x_librosa = _median_seconds(
        lambda: librosa.feature.inverse.mel_to_stft(
            part, sr=p.sample_rate, n_fft=p.n_fft, power=1.0, fmin=p.f_min, fmax=p.f_max, htk=True, norm=None,
        ),
        args.repeats,
    )
    print(f"NNLS on {args.columns} columns of a mini image ({p.n_mels} mel -> {p.n_fft // 2 + 1} bins)")
    print(f"  librosa mel_to_stft : {t_librosa * 1000:9.1f} ms   residual {residual(x_librosa):.4f}")
    print(f"  charforge sparse MU : {t_ours * 1000:9.1f} ms   residual {residual(x_ours):.4f}")
    print(f"  speed-up            : {t_librosa / t_ours:9.1f}x")

    image = codec.audio_to_image(y)
    t_decode, _ = _median_seconds(lambda: codec.image_to_audio(image, seed=0), args.repeats)
    print(f"whole mini tile ({p.seconds_per_image:.2f} s of audio): decode {t_decode:.2f} s, "
          f"realtime factor {p.seconds_per_image / t_decode:.1f}x")


if __name__ == "__main__":
    main()
