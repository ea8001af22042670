"""Steady loudness: BS.1770 integrated loudness on target, true peak under the ceiling, silence kept."""

from __future__ import annotations

import numpy as np
import pytest

from charforge.audio.loudness import integrated_loudness, limit, normalize_loudness, true_peak_dbtp
from charforge.errors import InvalidInput
from charforge.recipes.bgm_mini import music

SR = 22050


@pytest.mark.slow
@pytest.mark.parametrize("target", [-16.0, -23.0])
def test_procedural_clips_of_any_level_land_on_target_under_the_ceiling(target: float) -> None:
    rng = np.random.default_rng(2)
    before = []
    for _ in range(6):
        spec = music.random_spec(rng)
        y = music.render(spec, 8.0, SR)
        before.append(integrated_loudness(y, SR))
        z = normalize_loudness(y, SR, target, -1.0)
        assert abs(integrated_loudness(z, SR) - target) <= 1.0
        assert true_peak_dbtp(z, SR) <= -1.0 + 1e-6
    assert max(before) - min(before) > 3.0  # the inputs really were uneven


def test_true_peak_sees_inter_sample_overs() -> None:
    # a sine at a quarter of the rate, sampled 45 degrees off its peaks: samples reach 0.707, the wave 1.0
    n = np.arange(SR)
    y = np.sin(2 * np.pi * (SR / 4) * n / SR + np.pi / 4).astype(np.float32)
    assert np.max(np.abs(y)) == pytest.approx(np.sqrt(0.5), abs=1e-3)
    assert true_peak_dbtp(y, SR) == pytest.approx(0.0, abs=0.3)


def test_limiter_only_touches_the_peaks() -> None:
    rng = np.random.default_rng(0)
    y = 0.1 * rng.standard_normal(SR).astype(np.float32)
    y[SR // 2] = 0.99  # one spike
    z = limit(y, SR, -6.0)
    assert true_peak_dbtp(z, SR) <= -6.0 + 1e-6
    # 0.2 s away from the spike (four release time constants) the gain is back within 1% of unity
    far = np.r_[0 : SR // 2 - SR // 5, SR // 2 + SR // 5 : SR]
    assert np.max(np.abs(z[far] - y[far])) <= 0.01 * np.max(np.abs(y[far]))


def test_silence_stays_silent_and_bad_input_is_one_error() -> None:
    assert not np.any(normalize_loudness(np.zeros(SR, dtype=np.float32), SR))
    with pytest.raises(InvalidInput, match="at least"):
        integrated_loudness(np.zeros(100, dtype=np.float32), SR)
    with pytest.raises(InvalidInput, match="target"):
        normalize_loudness(np.zeros(SR), SR, target_lufs=3.0)
    with pytest.raises(InvalidInput, match="NaN"):
        normalize_loudness(np.full(SR, np.nan), SR)
