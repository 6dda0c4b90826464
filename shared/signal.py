"""The paper's signal processing: audio high-pass, pre-emphasis and STFT; the valence low-pass; z-scores.

Defaults are the paper's numbers (8th-order Butterworth high-pass at 100 Hz, pre-emphasis
``y(t) = (2 x(t) - x(t-1)) / 3``, 16 ms STFT windows with 4 frames per 40 ms label, magnitude ** 2/3,
1st-order Butterworth low-pass at fs = 25 Hz applied forward and backward). Where the authors' code went
wrong (the low-pass dragging both ends of every curve to 0) the fix is documented on the function.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import signal as sps

# How many time constants of the low-pass the edges are padded with: the start-up transient of each pass
# decays as exp(-t / tau), so after 6 tau it is below 0.25 % of the edge's mismatch.
_PAD_TIME_CONSTANTS = 6.0
# Smallest standard deviation zscore divides by: a constant series becomes 0, not inf/NaN.
STD_FLOOR = 1e-8


def _as_float(x: np.ndarray) -> np.ndarray:
    """Floating copy-free view of the input (float32 stays float32 so audio does not double in memory)."""
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    return arr


def highpass(
    x: np.ndarray, sample_rate: float, cutoff_hz: float = 100.0, order: int = 8, *, zero_phase: bool = False
) -> np.ndarray:
    """Butterworth high-pass (second-order sections, numerically safe at order 8) along the last axis.

    Causal by default: it is the paper's filter as stated, -3 dB at ``cutoff_hz`` with ``order`` poles, and
    its phase does not matter because the STFT that follows keeps magnitudes only. ``zero_phase=True`` runs
    it forward and backward as the authors' code did; that squares the magnitude response (-6 dB at the
    cut-off, twice the roll-off), so it is an alternative, not the default.
    """
    arr = _as_float(x)
    sos = _highpass_sos(sample_rate, cutoff_hz, order)
    if arr.shape[-1] == 0:
        return arr.copy()
    out = sps.sosfiltfilt(sos, arr, axis=-1) if zero_phase else sps.sosfilt(sos, arr, axis=-1)
    return out.astype(arr.dtype, copy=False)


def _highpass_sos(sample_rate: float, cutoff_hz: float, order: int) -> np.ndarray:
    if not 0 < cutoff_hz < sample_rate / 2:
        raise ValueError(f"cutoff_hz must be in (0, {sample_rate / 2}) for sample_rate {sample_rate}, got {cutoff_hz}")
    return sps.butter(order, cutoff_hz, btype="highpass", fs=sample_rate, output="sos")


def _stream_chunk(chunk: np.ndarray, stream: str) -> np.ndarray:
    """A chunk as a streaming filter takes it: floating point and 1-D (its state runs along one axis)."""
    arr = _as_float(chunk)
    if arr.ndim != 1:
        raise ValueError(f"{stream} filters 1-D chunks, got shape {arr.shape}")
    return arr


class HighpassStream:
    """The causal :func:`highpass` of a 1-D signal fed one chunk at a time.

    The filter's state (float64, as ``sosfilt`` keeps it) is carried from chunk to chunk, so the chunks
    filtered in turn are exactly the whole signal filtered at once, while only one chunk is ever in memory:
    a 30-minute track costs what a 10-second one does.
    """

    def __init__(self, sample_rate: float, cutoff_hz: float = 100.0, order: int = 8) -> None:
        self.sos = _highpass_sos(sample_rate, cutoff_hz, order)
        self.state = np.zeros((self.sos.shape[0], 2))

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        arr = _stream_chunk(chunk, "HighpassStream")
        if arr.size == 0:
            return arr.copy()
        out, self.state = sps.sosfilt(self.sos, arr, zi=self.state)
        return out.astype(arr.dtype, copy=False)


def preemphasis(x: np.ndarray) -> np.ndarray:
    """The paper's gentle first-order emphasis ``y(t) = (2 x(t) - x(t-1)) / 3`` along the last axis.

    The sample before the first is taken equal to the first (``x(-1) = x(0)``), so a signal that starts away
    from 0 does not get a click at t = 0.
    """
    arr = _as_float(x)
    if arr.shape[-1] == 0:
        return arr.copy()
    previous = np.concatenate([arr[..., :1], arr[..., :-1]], axis=-1)
    return ((2.0 * arr - previous) / 3.0).astype(arr.dtype, copy=False)


class PreemphasisStream:
    """:func:`preemphasis` of a 1-D signal fed in chunks: each chunk's ``x(-1)`` is the previous chunk's
    last sample (the very first chunk's is its own first sample), so the chunks equal the whole at once."""

    def __init__(self) -> None:
        self.last: np.ndarray | None = None

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        arr = _stream_chunk(chunk, "PreemphasisStream")
        if arr.size == 0:
            return arr.copy()
        first = arr[:1] if self.last is None else self.last.astype(arr.dtype)
        previous = np.concatenate([first, arr[:-1]])
        self.last = arr[-1:].copy()
        return ((2.0 * arr - previous) / 3.0).astype(arr.dtype, copy=False)


def _fill_nan(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation across NaN gaps (nearest value beyond the ends) and the NaN mask."""
    missing = np.isnan(x)
    if not missing.any():
        return x, missing
    index = np.arange(x.size)
    filled = x.copy()
    filled[missing] = np.interp(index[missing], index[~missing], x[~missing])
    return filled, missing


def lowpass(x: np.ndarray, cutoff_hz: float, fs: float = 25.0, order: int = 1) -> np.ndarray:
    """Zero-phase Butterworth low-pass of a 1-D prediction curve (forward then backward, like the authors).

    Cut-off convention: ``cutoff_hz`` is the -3 dB frequency of the Butterworth filter of each pass, as in the
    authors' code, so the values they tuned (0.004-0.01 Hz) mean the same here. Run twice, the magnitude
    response is squared: a sinusoid at ``cutoff_hz`` comes out with gain 1/2 (-6 dB), -3 dB per pass.

    Edges: the authors started both passes from a zero state without padding, so with a 0.004 Hz cut-off
    (time constant tau = 1 / (2 pi fc) = 40 s = 1000 samples) both ends of every curve were dragged toward
    0. Here ``scipy.signal.sosfiltfilt`` pads each end with an odd (point-symmetric) extension of
    ``6 tau`` samples, capped at ``len(x) - 1``, and starts each pass in the steady state of the first padded
    value. Odd padding keeps the level *and* slope at the ends, so constants and ramps pass unchanged.
    When the curve is shorter than 6 tau the padding is the whole curve, which is the best it can do.

    NaN (frames a modality could not see) are bridged by linear interpolation for filtering and put back
    afterwards; an all-NaN curve stays all NaN.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"lowpass expects a 1-D curve, got shape {arr.shape}")
    if not 0 < cutoff_hz < fs / 2:
        raise ValueError(f"cutoff_hz must be in (0, {fs / 2}) for fs {fs}, got {cutoff_hz}")
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    if arr.size < 2 or np.isnan(arr).all():
        return arr.copy()
    filled, missing = _fill_nan(arr)
    sos = sps.butter(order, cutoff_hz, btype="lowpass", fs=fs, output="sos")
    tau_samples = fs / (2.0 * math.pi * cutoff_hz)
    padlen = min(arr.size - 1, int(math.ceil(_PAD_TIME_CONSTANTS * order * tau_samples)))
    out = sps.sosfiltfilt(sos, filled, padtype="odd", padlen=padlen)
    out[missing] = np.nan
    return out


def stft_features(
    audio: np.ndarray,
    sample_rate: int = 16000,
    win_ms: float = 16.0,
    hop_ms: float = 10.0,
    power: float = 2.0 / 3.0,
) -> np.ndarray:
    """Power-compressed STFT magnitudes, ``(n_frames, n_bins)`` float32, exactly 4 frames per 40 ms label.

    The paper says "16 ms sliding windows with 10 ms overlap", and also "exactly 4 STFT frames for each
    valence measure (every 40 ms)". Taken literally, a 10 ms overlap means a 6 ms hop, i.e. 6.67 frames per
    label, which contradicts the second sentence and the model's 200 outputs per 8 s. The only reading that
    gives 4 frames per 40 ms is frames every 10 ms, i.e. a 10 ms *hop* (consecutive 16 ms windows overlap by
    6 ms), and that is what this implements: ``hop_ms`` is that 10 ms.

    Framing: frame ``j`` is centred on the middle of the ``j``-th hop interval ``[j hop, (j+1) hop)``, so
    there are ``ceil(len / hop)`` frames (8 s at 16 kHz -> 800 frames) and the frames of label ``k`` are
    ``4k .. 4k+3``, all centred inside that label's 40 ms. The signal is padded by ``(win - hop) / 2``
    samples at each end (reflection; zeros when the signal is too short to reflect) so the first and last
    windows are full. Window: periodic Hann (the paper names none). Bins: ``win // 2 + 1`` (129 at 256).
    Phase is dropped and the magnitude raised to ``power`` (2/3, a loudness-like compression).
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"stft_features expects mono 1-D audio, got shape {x.shape}")
    win = int(round(win_ms * sample_rate / 1000.0))
    hop = int(round(hop_ms * sample_rate / 1000.0))
    if hop < 1 or win < hop:
        raise ValueError(f"need 1 <= hop <= window, got window {win} and hop {hop} samples")
    n_bins = win // 2 + 1
    n_frames = int(math.ceil(x.size / hop))
    if n_frames == 0:
        return np.zeros((0, n_bins), np.float32)
    left = (win - hop) // 2
    right = (n_frames - 1) * hop + win - left - x.size
    mode = "reflect" if x.size > max(left, right) else "constant"
    padded = np.pad(x, (left, right), mode=mode)
    window = sps.get_window("hann", win, fftbins=True)
    out = np.empty((n_frames, n_bins), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(padded, win)[::hop]
    block = 4096  # bounded memory for long files: 4096 windowed frames (8 MB) at a time
    for start in range(0, n_frames, block):
        spectrum = np.fft.rfft(frames[start : start + block] * window, axis=-1)
        out[start : start + block] = np.abs(spectrum) ** power
    return out


def zscore(
    x: np.ndarray, mean: np.ndarray | float | None = None, std: np.ndarray | float | None = None, axis: int = 0
) -> np.ndarray:
    """``(x - mean) / max(std, 1e-8)``; statistics from ``x`` along ``axis`` unless given (e.g. training's).

    NaN entries are ignored by the statistics and stay NaN; a constant series maps to 0 instead of NaN/inf.
    Given statistics must broadcast against ``x`` (e.g. per-bin vectors of shape ``(n_bins,)`` for axis 0).
    """
    arr = np.asarray(x, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: their statistics are NaN, fine
        mu = np.nanmean(arr, axis=axis, keepdims=True) if mean is None else np.asarray(mean, dtype=np.float64)
        sigma = np.nanstd(arr, axis=axis, keepdims=True) if std is None else np.asarray(std, dtype=np.float64)
    return (arr - mu) / np.maximum(sigma, STD_FLOOR)
