"""What every modality offers: one preparation path from a video to model windows, and back to frames.

Training and serving both call :meth:`Modality.prepare`; training then reads ``labels[windows.label_frames]``.
There is deliberately no second, training-only preprocessing function.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from shared.registry import entry, load_object

if TYPE_CHECKING:
    from shared.modalities.frame_stream import FrameConsumer
    from shared.settings import Settings
    from shared.values import PipelineOptions


@dataclass
class Windows:
    """Model-ready windows of one video.

    ``inputs`` is keyed by the SavedModel's ``serving_default`` input names (first axis = window).
    ``label_frames`` gives, per window, the 25 fps frame index (or indices, for sequence outputs such as
    audio's 200 steps) whose valence the window predicts. ``missing`` marks frames the modality cannot see.
    ``label_spans`` (optional, shape (n_windows, 2), [start, end) frames) is for windows whose target is
    the mean valence over a span rather than one frame (text: each word is labelled with the mean over the
    frames it is spoken in); :func:`window_labels` is the one function training uses to read targets.
    """

    inputs: dict[str, np.ndarray]
    label_frames: np.ndarray
    n_frames: int
    missing: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    info: dict[str, Any] = field(default_factory=dict)
    label_spans: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.missing.size == 0:
            self.missing = np.zeros(self.n_frames, dtype=bool)
        if self.missing.shape != (self.n_frames,):
            raise ValueError(f"missing has shape {self.missing.shape}, expected ({self.n_frames},)")

    def __len__(self) -> int:
        return int(self.label_frames.shape[0])


def window_labels(labels: np.ndarray, windows: Windows) -> np.ndarray:
    """Training targets of ``windows``: ``labels[windows.label_frames]``, or span means when spans are given.

    Span means use a cumulative sum, so each target is exactly the mean of ``labels[start:end]``.
    """
    labels = np.asarray(labels, dtype=np.float32)
    if len(labels) < windows.n_frames:
        raise ValueError(f"{len(labels)} labels for a video of {windows.n_frames} frames")
    if windows.label_spans is None:
        return labels[windows.label_frames]
    spans = np.asarray(windows.label_spans, dtype=np.int64)
    cumulative = np.concatenate([[0.0], np.cumsum(labels, dtype=np.float64)])
    lengths = np.maximum(spans[:, 1] - spans[:, 0], 1)
    return ((cumulative[spans[:, 0] + lengths] - cumulative[spans[:, 0]]) / lengths).astype(np.float32)


UNKNOWN_SUBJECT_INDEX = 0


def subject_index(subject: int, known_subjects: Sequence[int]) -> int:
    """Row of a subject-embedding table: 1 + the subject's position in ``known_subjects``; 0 = unknown.

    Models with a trainable subject vector (text, raw face) learn one row per training subject plus row 0,
    which training also feeds with randomly dropped-out subjects, so a listener never seen in training
    (or a request without a subject id) gets a meaningful "average listener" vector instead of noise.
    ``known_subjects`` is the sorted list recorded in the model's preprocessing metadata.
    """
    known = [int(s) for s in known_subjects]
    subject = int(subject)
    return known.index(subject) + 1 if subject in known else UNKNOWN_SUBJECT_INDEX


class Modality(ABC):
    """One modality's preprocessing, shared by training and serving: video -> windows -> frames.

    Subclasses give ``name``, :meth:`prepare` and :meth:`to_frames`; the other hooks have defaults that fit a
    modality without them, so callers (the trainer, the pipeline) call them on every modality alike.
    """

    name: ClassVar[str]

    @abstractmethod
    def prepare(self, video: Path, *, subject: int, transcript: Path | None = None,
                params: dict[str, Any] | None = None) -> Windows:
        """Turn a video into model windows, with preprocessing parameters from the model's metadata."""

    @abstractmethod
    def to_frames(self, predictions: np.ndarray, windows: Windows) -> np.ndarray:
        """Map window predictions onto the 25 fps grid: shape (n_frames,), NaN where missing."""

    def default_params(self) -> dict[str, Any]:
        """Preprocessing defaults; training records them (with any overrides) in the model's metadata."""
        return {}

    def settings_params(self, settings: Settings) -> dict[str, Any]:
        """Preprocessing this modality takes from the settings when a model is trained; training records it in
        the model's metadata, where inference reads it (text: the lexicons; body: its crop). Default: none."""
        return {}

    def runtime_params(self, settings: Settings) -> dict[str, Any]:
        """Parameters of this process, not of the model (how to decode, where words come from), from the
        settings its caller read: passed to :meth:`prepare` at inference and training alike, never recorded."""
        return {}

    def inference_params(self, settings: Settings, options: PipelineOptions) -> dict[str, Any]:
        """Parameters only inference uses, from the settings and the job's options (the listener region, every
        k-th frame), applied over the model's recorded ones; never recorded at training. Default: none."""
        return {}

    def fit_params(self, windows: list[Windows], params: dict[str, Any]) -> dict[str, Any]:
        """``params`` completed from the training clips' windows (e.g. normalisation statistics).

        Called once by the trainer on the training clips only (never the validation ones), with windows
        prepared with ``params``; the default needs nothing from the data.
        """
        return params

    def apply_fitted(self, windows: Windows, params: dict[str, Any]) -> Windows:
        """Windows prepared before :meth:`fit_params`, turned into what ``prepare(..., params=fitted)`` gives.

        Lets the trainer prepare each training clip once: override it together with a :meth:`fit_params`
        that changes what :meth:`prepare` produces (audio's z-normalisation). The default returns the windows
        unchanged, right for parameters that only record something (text's lexicon fingerprints).
        """
        return windows

    def frame_consumer(self, video: Path, *, subject: int,
                       params: dict[str, Any] | None = None) -> FrameConsumer | None:
        """The per-frame part, for a decode shared with other modalities; None: this modality decodes alone."""
        return None


def get_modality(name: str) -> Modality:
    """The modality object of ``name``, as its registry entry names it (default ``shared.modalities.<name>``'s
    ``MODALITY``); imported on first use, so a process loads only the preprocessing it runs. A plugin's object
    that is not a :class:`Modality` is refused here, with its path, rather than deep inside training."""
    path = entry(name).preprocessing
    modality = load_object(path)
    if not isinstance(modality, Modality):
        raise TypeError(f"modality {name!r}: {path} is a {type(modality).__name__}, not a "
                        "shared.modalities.base.Modality subclass instance")
    return modality
