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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from shared.modalities.base import Modality, Windows
from shared.signal import HighpassStream, PreemphasisStream, stft_features, zscore
from shared.signal_checks import LoudnessMeter
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


class SliceBuilder:
    """THE preparation of a recording, fed in chunks: model-ready slices plus the frames their outputs belong to.

    High-pass and pre-emphasis run as streams over the whole track (their state carried across chunks, so
    slices never see filter edges and the result equals filtering the track at once); a slice's STFT and
    z-normalisation are computed as soon as its 8 s of audio have arrived, straight into one preallocated
    array, and the audio before the next slice's start is dropped. The memory of a long video is therefore
    the slices themselves (~3.9 MiB per minute of float32 spectrogram, what the model is fed) plus one
    chunk, instead of the whole track in float32 and float64 copies (~30 MiB per minute before).

    Slice ``i`` covers the audio of frames ``starts[i] .. starts[i] + slice_frames - 1``; audio missing at
    the end (a video shorter than 8 s, or audio a few samples shorter than the video) is silence.
    """

    def __init__(self, n_frames: int, params: dict[str, Any] | None = None) -> None:
        p = {**DEFAULT_PARAMS, **(params or {})}
        if n_frames < 1:
            raise ValueError("the video has no frames")
        self.p, self.n_frames = p, int(n_frames)
        self.length, stride = slice_geometry(p)
        self.sample_rate = int(p["sample_rate"])
        self.samples_per_frame = self.sample_rate // int(p["fps"])
        self.slice_samples = self.length * self.samples_per_frame
        self.starts = window_starts(self.n_frames, self.length, stride)
        self.highpass = HighpassStream(self.sample_rate, cutoff_hz=float(p["highpass_hz"]),
                                       order=int(p["highpass_order"]))
        self.emphasis = PreemphasisStream()
        self.mean = None if p.get("feature_mean") is None else np.asarray(p["feature_mean"], dtype=np.float64)
        self.std = None if p.get("feature_std") is None else np.asarray(p["feature_std"], dtype=np.float64)
        self.buffer = np.zeros(0, np.float32)  # emphasised audio from sample `buffer_start` on
        self.buffer_start = 0
        self.done = 0  # slices computed so far
        self.slices: np.ndarray | None = None

    def feed(self, chunk: np.ndarray) -> None:
        """The next samples of the track (float mono at ``sample_rate``)."""
        emphasised = self.emphasis(self.highpass(np.asarray(chunk, dtype=np.float32)))
        self.buffer = np.concatenate([self.buffer, emphasised]) if self.buffer.size else emphasised
        self._emit(final=False)

    def finish(self) -> Windows:
        """The remaining slices (padded with silence where the audio ended) and the windows."""
        self._emit(final=True)
        label_frames = np.minimum(self.starts[:, None] + np.arange(self.length)[None, :], self.n_frames - 1)
        return Windows(inputs={INPUT_NAME: self.slices}, label_frames=label_frames, n_frames=self.n_frames,
                       info={"starts": self.starts, "normalised": self.mean is not None})

    def _emit(self, *, final: bool) -> None:
        end = self.buffer_start + self.buffer.size
        while self.done < len(self.starts):
            first = int(self.starts[self.done]) * self.samples_per_frame - self.buffer_start
            if not final and self.buffer_start + first + self.slice_samples > end:
                break
            segment = pad_end(self.buffer[first: first + self.slice_samples], self.slice_samples, value=0.0)
            self._store(stft_features(segment, sample_rate=self.sample_rate, win_ms=float(self.p["win_ms"]),
                                      hop_ms=float(self.p["hop_ms"]), power=float(self.p["power"])))
        if self.done < len(self.starts):  # keep only what the next slices still need
            drop = int(self.starts[self.done]) * self.samples_per_frame - self.buffer_start
            if drop > 0:
                self.buffer = self.buffer[drop:].copy()
                self.buffer_start += drop
        else:
            self.buffer = np.zeros(0, np.float32)

    def _store(self, features: np.ndarray) -> None:
        if self.slices is None:
            self.slices = np.empty((len(self.starts), *features.shape), np.float32)
        self.slices[self.done] = features if self.mean is None else zscore(features, mean=self.mean, std=self.std)
        self.done += 1


def prepare_audio(audio: np.ndarray, n_frames: int, params: dict[str, Any] | None = None) -> Windows:
    """The preparation of a recording held in memory (the same :class:`SliceBuilder` a video streams into).

    Training reads ``labels[label_frames]`` (frames past the end of a short video repeat the last frame);
    inference gets exactly the same slices from :meth:`AudioModality.prepare`.
    """
    builder = SliceBuilder(n_frames, params)
    builder.feed(audio)
    return builder.finish()


class AudioModality(Modality):
    """The audio modality: decode the track, prepare slices, stitch slice predictions onto the frame grid."""

    name = "audio"

    def default_params(self) -> dict[str, Any]:
        return dict(DEFAULT_PARAMS)

    def prepare(self, video: Path, *, subject: int, transcript: Path | None = None,
                params: dict[str, Any] | None = None) -> Windows:
        from shared.media import iter_audio, probe

        p = {**DEFAULT_PARAMS, **(params or {})}
        n_frames = probe(video).n_frames
        builder = SliceBuilder(n_frames, p)
        loudness = LoudnessMeter(int(p["sample_rate"]))
        for chunk in iter_audio(video, sample_rate=int(p["sample_rate"])):  # 10 s at a time: flat memory
            builder.feed(chunk)
            loudness.feed(chunk)
        windows = builder.finish()
        windows.info["loudest_dbfs"] = loudness.loudest_dbfs
        silent = loudness.reason(self.name)
        if silent:
            windows.info["no_signal"] = silent
        logger.debug("audio prepared", extra={"video": str(video), "slices": len(windows), "n_frames": n_frames})
        return windows

    def fit_params(self, windows: list[Windows], params: dict[str, Any]) -> dict[str, Any]:
        """Per-frequency-bin mean/std over every STFT frame of the training slices (not the validation ones)."""
        frames = np.concatenate([w.inputs[INPUT_NAME].reshape(-1, w.inputs[INPUT_NAME].shape[-1]) for w in windows])
        return {**params, "feature_mean": frames.mean(axis=0).tolist(), "feature_std": frames.std(axis=0).tolist()}

    def apply_fitted(self, windows: Windows, params: dict[str, Any]) -> Windows:
        """Raw slices z-normalised with the fitted statistics: element for element what ``prepare`` stores.

        (Both take the float32 STFT magnitudes through :func:`shared.signal.zscore` in float64 and store float32.)
        """
        if params.get("feature_mean") is None:
            return windows
        if windows.info.get("normalised"):
            raise ValueError("these audio slices are normalised already; fit on slices prepared without statistics")
        slices = zscore(windows.inputs[INPUT_NAME], mean=np.asarray(params["feature_mean"], dtype=np.float64),
                        std=np.asarray(params["feature_std"], dtype=np.float64)).astype(np.float32)
        return replace(windows, inputs={**windows.inputs, INPUT_NAME: slices},
                       info={**windows.info, "normalised": True})

    def to_frames(self, predictions: np.ndarray, windows: Windows) -> np.ndarray:
        """Average the overlapping slices' 200-step predictions per frame."""
        predictions = np.asarray(predictions, dtype=np.float64).reshape(len(windows), -1)
        return stitch(predictions, np.asarray(windows.info["starts"]), windows.n_frames)


MODALITY = AudioModality()
