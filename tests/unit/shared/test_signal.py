"""High-pass, pre-emphasis, the zero-phase valence low-pass, the paper's STFT and z-scores."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from shared.signal import (
    HighpassStream,
    PreemphasisStream,
    highpass,
    lowpass,
    preemphasis,
    stft_features,
    zscore,
)


def steady_gain(x: np.ndarray, y: np.ndarray, freq: float, fs: float) -> float:
    """Amplitude ratio of the sinusoid at ``freq`` in y vs x, fitted on the middle half (edges excluded)."""
    n = x.size
    mid = slice(n // 4, 3 * n // 4)
    t = np.arange(n)[mid] / fs
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    amp_x = np.linalg.norm(np.linalg.lstsq(basis, x[mid], rcond=None)[0])
    amp_y = np.linalg.norm(np.linalg.lstsq(basis, y[mid], rcond=None)[0])
    return float(amp_y / amp_x)


@pytest.mark.parametrize("cutoff", [1.0, 0.01])
def test_lowpass_is_minus_3db_per_pass_at_its_cutoff(cutoff: float) -> None:
    fs = 25.0
    n = int(40 * fs / cutoff)  # 40 periods of the cut-off frequency
    x = np.sin(2 * np.pi * cutoff * np.arange(n) / fs)
    gain = steady_gain(x, lowpass(x, cutoff, fs=fs), cutoff, fs)
    assert gain == pytest.approx(0.5, abs=0.01)  # (-3 dB)^2 = -6 dB for forward + backward
    slow = np.sin(2 * np.pi * cutoff / 10 * np.arange(n) / fs)
    assert steady_gain(slow, lowpass(slow, cutoff, fs=fs), cutoff / 10, fs) > 0.98
    fast = np.sin(2 * np.pi * cutoff * 10 * np.arange(n) / fs)
    assert steady_gain(fast, lowpass(fast, cutoff, fs=fs), cutoff * 10, fs) < 0.02


def test_lowpass_edges_of_a_constant_are_not_dragged_to_zero() -> None:
    x = np.full(3000, 0.7)
    np.testing.assert_allclose(lowpass(x, 0.004), x, atol=1e-9)


def test_lowpass_edges_of_a_ramp_are_not_dragged_to_zero() -> None:
    x = np.linspace(0.2, 0.8, 3000)  # 2 minutes at 25 fps, cut-off time constant 40 s
    y = lowpass(x, 0.004)
    assert y[0] == pytest.approx(0.2, abs=0.02)
    assert y[-1] == pytest.approx(0.8, abs=0.02)
    # the authors' two zero-state passes on the same ramp: the end is dragged to 0 (0.8 expected)
    b, a = sps.butter(1, 0.004, fs=25.0)
    naive = sps.lfilter(b, a, sps.lfilter(b, a, x)[::-1])[::-1]
    assert abs(naive[-1]) < 0.01


def test_lowpass_bridges_nan_gaps_and_puts_them_back() -> None:
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(0, 0.01, 2000))
    with_gaps = x.copy()
    with_gaps[[0, 1]] = np.nan
    with_gaps[500:700] = np.nan
    y = lowpass(with_gaps, 0.01)
    assert np.array_equal(np.isnan(y), np.isnan(with_gaps))
    filled = with_gaps.copy()
    filled[[0, 1]] = with_gaps[2]
    filled[500:700] = np.linspace(with_gaps[499], with_gaps[700], 202)[1:-1]
    expected = lowpass(filled, 0.01)
    valid = ~np.isnan(with_gaps)
    np.testing.assert_allclose(y[valid], expected[valid])
    assert np.isnan(lowpass(np.full(10, np.nan), 0.01)).all()


def test_lowpass_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="cutoff"):
        lowpass(np.zeros(10), 13.0)
    with pytest.raises(ValueError, match="1-D"):
        lowpass(np.zeros((3, 3)), 0.01)


def test_highpass_is_the_papers_butterworth() -> None:
    fs = 16000
    t = np.arange(fs * 2) / fs
    for freq, low, high in [(100.0, 0.69, 0.72), (50.0, 0.0, 0.005), (1000.0, 0.999, 1.001)]:
        x = np.sin(2 * np.pi * freq * t)
        assert low <= steady_gain(x, highpass(x, fs), freq, fs) <= high, freq
    x = np.sin(2 * np.pi * 100.0 * t)
    assert steady_gain(x, highpass(x, fs, zero_phase=True), 100.0, fs) == pytest.approx(0.5, abs=0.01)
    assert highpass(x.astype(np.float32), fs).dtype == np.float32


def test_preemphasis_formula() -> None:
    x = np.random.default_rng(2).normal(size=100)
    y = preemphasis(x)
    np.testing.assert_allclose(y[1:], (2 * x[1:] - x[:-1]) / 3)
    assert y[0] == pytest.approx(x[0] / 3)


def test_stft_gives_four_frames_per_label_and_800_frames_for_8_seconds() -> None:
    sr = 16000
    feats = stft_features(np.random.default_rng(3).normal(size=8 * sr).astype(np.float32))
    assert feats.shape == (800, 129)
    assert feats.dtype == np.float32
    assert 8 * 25 * 4 == feats.shape[0]
    for n_labels in (1, 3, 17):
        assert stft_features(np.zeros(n_labels * 640)).shape[0] == 4 * n_labels


def test_stft_frames_are_centred_in_their_10ms_hop() -> None:
    x = np.zeros(16000)
    for frame in (0, 37, 99):
        impulse = x.copy()
        impulse[frame * 160 + 80] = 1.0
        energy = stft_features(impulse).sum(axis=1)
        assert int(np.argmax(energy)) == frame


def test_stft_power_law_and_frequency_axis() -> None:
    t = np.arange(16000) / 16000
    quiet = stft_features(0.1 * np.sin(2 * np.pi * 1000 * t))
    loud = stft_features(0.2 * np.sin(2 * np.pi * 1000 * t))
    assert int(np.argmax(quiet[50])) == 16  # 1000 Hz / (16000 / 256 Hz per bin)
    assert loud[50, 16] / quiet[50, 16] == pytest.approx(2 ** (2 / 3), rel=1e-4)


def test_zscore_statistics_given_and_degenerate() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(3.0, 2.0, (500, 4))
    z = zscore(x)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1)
    np.testing.assert_allclose(zscore(x, mean=np.full(4, 3.0), std=np.full(4, 2.0)), (x - 3.0) / 2.0)
    constant = zscore(np.full((10, 2), 5.0))
    np.testing.assert_array_equal(constant, 0.0)
    with_nan = np.array([1.0, np.nan, 3.0])
    out = zscore(with_nan)
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [-1.0, 1.0])


@pytest.mark.parametrize("chunk", [1, 777, 16000, 10**6])
def test_streamed_highpass_and_preemphasis_equal_the_whole_signal_at_once(chunk: int) -> None:
    """Audio is filtered as it is decoded (flat memory): the chunks must give exactly the whole-track result."""
    x = (0.1 * np.random.default_rng(3).standard_normal(50_000)).astype(np.float32)
    x[:100] += 0.5  # a signal that does not start at 0 (the pre-emphasis edge rule matters)
    highpass_stream, emphasis_stream = HighpassStream(16000), PreemphasisStream()
    streamed = np.concatenate([emphasis_stream(highpass_stream(x[i:i + chunk])) for i in range(0, x.size, chunk)])
    whole = preemphasis(highpass(x, 16000))
    assert streamed.dtype == np.float32
    np.testing.assert_array_equal(streamed, whole)


def test_streamed_highpass_rejects_what_highpass_rejects() -> None:
    with pytest.raises(ValueError, match="cutoff_hz"):
        HighpassStream(16000, cutoff_hz=9000.0)
    with pytest.raises(ValueError, match="1-D"):
        HighpassStream(16000)(np.zeros((2, 10), np.float32))
