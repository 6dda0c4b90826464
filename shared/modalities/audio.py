"""Speech audio modality: the paper's spectrogram slices, prepared identically for training and serving.

Pipeline (Sec. II-A of the paper), on the whole 16 kHz mono track of the video:

1. 8th-order Butterworth high-pass at 100 Hz (drops low-frequency noise);
2. pre-emphasis ``y(t) = (2 x(t) - x(t-1)) / 3``;
3. 8 s slices with 20 % overlap (200 labels per slice, a new slice every 160 frames = 6.4 s; the last slice
   is shifted to end exactly at the video's end, see :func:`shared.windows.window_starts`);
4. STFT of each slice: 16 ms Hann windows every 10 ms -> exactly 4 frames per 40 ms label (800 x 129);
   the phase is dropped and magnitudes raised to 2/3;
5. z-normalisation per frequency bin with the training set's statistics (``feature_mean``/``feature_std``
   in the model's metadata, computed by :meth:`AudioModality.fit_params` on the training clips only).

Each slice predicts 200 valence values, one per frame it covers; overlapping predictions are averaged
back onto the 25 fps grid. The authors' code differed (pre-emphasis x(t) - 0.5 x(t-1), zero-phase high-pass,
50 % overlap, one scalar mean/std): those are parameters here (``slice_overlap``...), not silent swaps.
No TensorFlow here: workers only preprocess and call a model server.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from shared.modalities.base import Windows
from shared.signal import highpass, preemphasis, stft_features, zscore
from shared.windows import pad_end, stitch, window_starts

logger = logging.getLogger(__name__)

INPUT_NAME = "spectrogram"

DEFAULT_PARAMS: dict[str, Any] = {
    "sample_rate": 16000,
    "fps": 25,
    "highpass_hz": 100.0,
    "highpass_order": 8,
    "slice_s": 8.0,
    "slice_overlap": 0.2,
    "win_ms": 16.0,
    "hop_ms": 10.0,
    "power": 2.0 / 3.0,
    "feature_mean": None,  # per-bin training statistics, set by fit_params
    "feature_std": None,
}


def slice_geometry(params: dict[str, Any]) -> tuple[int, int]:
    """(frames per slice, frames between slice starts): (200, 160) for 8 s at 25 fps with 20 % overlap."""
    length = int(round(float(params["slice_s"]) * int(params["fps"])))
    stride = max(1, int(round(length * (1.0 - float(params["slice_overlap"])))))
    return length, stride


def emphasise(audio: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """High-pass then pre-emphasis over the whole track (before slicing, so slices never see filter edges)."""
    filtered = highpass(np.asarray(audio, dtype=np.float32), int(params["sample_rate"]),
                        cutoff_hz=float(params["highpass_hz"]), order=int(params["highpass_order"]))
    return preemphasis(filtered)


def spectrogram_slices(emphasised: np.ndarray, n_frames: int, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(slice start frames, un-normalised slices of shape (n_slices, 4 * slice_frames, n_bins)).

    Slice ``i`` covers the audio of frames ``starts[i] .. starts[i] + slice_frames - 1``; audio missing at
    the end (a video shorter than 8 s, or audio a few samples shorter than the video) is silence.
    """
    length, stride = slice_geometry(params)
    samples_per_frame = int(params["sample_rate"]) // int(params["fps"])
    starts = window_starts(n_frames, length, stride)
    slice_samples = length * samples_per_frame
    slices = []
    for start in starts:
        segment = emphasised[start * samples_per_frame: start * samples_per_frame + slice_samples]
        segment = pad_end(np.asarray(segment, dtype=np.float32), slice_samples, value=0.0)
        slices.append(stft_features(segment, sample_rate=int(params["sample_rate"]), win_ms=float(params["win_ms"]),
                                    hop_ms=float(params["hop_ms"]), power=float(params["power"])))
    return starts, np.stack(slices).astype(np.float32)


def prepare_audio(audio: np.ndarray, n_frames: int, params: dict[str, Any] | None = None) -> Windows:
    """THE preparation of a recording: model-ready slices plus the frames their 200 outputs belong to.

    Training calls this through :meth:`AudioModality.prepare` and reads ``labels[label_frames]`` (frames
    past the end of a short video repeat the last frame); inference calls the same function.
    """
    p = {**DEFAULT_PARAMS, **(params or {})}
    if n_frames < 1:
        raise ValueError("the video has no frames")
    length, _ = slice_geometry(p)
    starts, slices = spectrogram_slices(emphasise(audio, p), n_frames, p)
    if p.get("feature_mean") is not None:
        mean = np.asarray(p["feature_mean"], dtype=np.float64)
        std = np.asarray(p["feature_std"], dtype=np.float64)
        slices = zscore(slices, mean=mean, std=std).astype(np.float32)
    label_frames = np.minimum(starts[:, None] + np.arange(length)[None, :], n_frames - 1)
    return Windows(inputs={INPUT_NAME: slices}, label_frames=label_frames, n_frames=n_frames,
                   info={"starts": starts})


class AudioModality:
    """The audio modality: decode the track, prepare slices, stitch slice predictions onto the frame grid."""

    name = "audio"

    def default_params(self) -> dict[str, Any]:
        return dict(DEFAULT_PARAMS)

    def prepare(self, video: Path, *, subject: int, transcript: Path | None = None,
                params: dict[str, Any] | None = None) -> Windows:
        from shared.media import probe, read_audio

        p = {**DEFAULT_PARAMS, **(params or {})}
        audio = read_audio(video, sample_rate=int(p["sample_rate"]))
        n_frames = probe(video).n_frames
        windows = prepare_audio(audio, n_frames, p)
        logger.debug("audio prepared", extra={"video": str(video), "slices": len(windows), "n_frames": n_frames})
        return windows

    def fit_params(self, windows: list[Windows], params: dict[str, Any]) -> dict[str, Any]:
        """Per-frequency-bin mean/std over every STFT frame of the training slices (not the validation ones)."""
        frames = np.concatenate([w.inputs[INPUT_NAME].reshape(-1, w.inputs[INPUT_NAME].shape[-1]) for w in windows])
        return {**params, "feature_mean": frames.mean(axis=0).tolist(), "feature_std": frames.std(axis=0).tolist()}

    def to_frames(self, predictions: np.ndarray, windows: Windows) -> np.ndarray:
        """Average the overlapping slices' 200-step predictions per frame."""
        predictions = np.asarray(predictions, dtype=np.float64).reshape(len(windows), -1)
        return stitch(predictions, np.asarray(windows.info["starts"]), windows.n_frames)


MODALITY = AudioModality()
