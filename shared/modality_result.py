"""One modality's outcome on one video: a value type, shared by the pipeline, the job files and the results.

It lives on its own (not in :mod:`shared.pipeline`) so that what stores or renders a result (``jobs``,
:mod:`shared.results`) does not import the orchestrator and everything it pulls in.

A modality that cannot see anything in a video (no audio stream, no face, no words) is ``unavailable``,
not ``failed``: fusion weighs it out and the job still succeeds. ``failed`` means something broke
(model server down, corrupt file) and carries the error text for the job status.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STATUS_OK = "ok"
STATUS_UNAVAILABLE = "unavailable"
STATUS_FAILED = "failed"


@dataclass
class ModalityResult:
    name: str
    values: np.ndarray  # (n_frames,) post-processed valence; NaN where the modality saw nothing
    missing: np.ndarray  # (n_frames,) bool
    status: str  # "ok" | "unavailable" | "failed"
    detail: str = ""
    seconds: float = 0.0
    model_version: int | None = None
    notes: list[str] = field(default_factory=list)  # for the job's notes: listener region searched, ambiguity


def empty_result(name: str, status: str, detail: str, seconds: float = 0.0, n_frames: int = 0) -> ModalityResult:
    """A result without values: every one of ``n_frames`` frames missing (none when the length is unknown)."""
    return ModalityResult(name=name, values=np.full(n_frames, np.nan), missing=np.ones(n_frames, dtype=bool),
                          status=status, detail=detail, seconds=seconds)
