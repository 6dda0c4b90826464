"""The pipeline's value types: what an analysis is asked (:class:`PipelineOptions`) and what one modality
gives (:class:`ModalityResult`).

They live on their own (not in :mod:`shared.pipeline`) so that what builds a request, stores or renders a
result (``jobs``, :mod:`shared.results`, the gateway) does not import the orchestrator and all it pulls in.

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


@dataclass(frozen=True)
class PipelineOptions:
    """A job's options the pipeline applies (from ``jobs.request.JobRequest.pipeline_options``); None: the
    setting's value. ``listener``: the listener region spec (:mod:`shared.crops`); ``fusion``: the fusion
    specification (:mod:`shared.fusion_methods`)."""

    listener: str | None = None
    fusion: str | None = None


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
