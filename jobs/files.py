"""A job's files, by what they are: the upload, per-modality series, the result, through the job storage.

Blobs of a job (:mod:`jobs.storage`; the local backend keeps them under ``<storage_dir>/jobs/<id>/``)::

    video<.ext>            the upload, as received
    transcript.json        optional word timings uploaded with it
    series/<m>.npy         float32 (n_frames,) post-processed valence, NaN where the modality saw nothing
    series/<m>.json        {"name", "status", "detail", "seconds", "model_version", "n_frames", "notes"}
    result.json            the result document (shared.results)

Celery messages and Redis carry blob names and statuses only ("results by reference"): a 10-minute video is
15 000 floats per modality, which has no business in a broker. Every write is atomic (the storage's
promise). A worker that needs the upload as a file gets a private copy (:meth:`JobFiles.local_inputs`),
deleted when it is done.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jobs.storage import JobStorage, open_storage
from jobs.storage.local import atomic_write
from shared.settings import Settings
from shared.values import ModalityResult

VIDEO = "video"  # the upload's blob is video<.ext>
TRANSCRIPT = "transcript.json"
RESULT = "result.json"


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, allow_nan=False, separators=(",", ":")).encode()


def write_json(path: Path | str, document: Any) -> None:
    """A JSON document into a local file, whole or not at all (``empathy analyze --json``); strict: no NaN."""
    atomic_write(Path(path), _json_bytes(document))


def series_name(modality: str) -> str:
    """The blob name of a modality's series descriptor (what an analysis task returns)."""
    return f"series/{modality}.json"


@dataclass(frozen=True)
class LocalInputs:
    """A worker's private copies of a job's inputs (deleted when the ``with`` block of
    :meth:`JobFiles.local_inputs` ends)."""

    video: Path
    transcript: Path | None


class JobFiles:
    """The blobs of one job in a :class:`jobs.storage.JobStorage`."""

    def __init__(self, storage: JobStorage, job_id: str) -> None:
        self.storage = storage
        self.job_id = job_id

    @classmethod
    def open(cls, settings: Settings, job_id: str) -> JobFiles:
        return cls(open_storage(settings), job_id)

    def exists(self) -> bool:
        """Whether the job has anything stored (False once deleted)."""
        return self.storage.job_exists(self.job_id)

    def delete(self) -> bool:
        return self.storage.delete(self.job_id)

    # --- inputs ----------------------------------------------------------------------------------------
    def put_video(self, source: Path, suffix: str, *, move: bool = False) -> str:
        """Store the upload as ``video<suffix>``; returns its blob name."""
        name = f"{VIDEO}{suffix}"
        self.storage.put_file(self.job_id, name, source, move=move)
        return name

    def put_transcript(self, source: Path, *, move: bool = False) -> None:
        self.storage.put_file(self.job_id, TRANSCRIPT, source, move=move)

    def video_name(self) -> str:
        """The upload's blob name (``video.<ext>``); FileNotFoundError when the job has none."""
        matches = [n for n in self.storage.names(self.job_id) if n.startswith(f"{VIDEO}.") and "/" not in n]
        if not matches:
            raise FileNotFoundError(f"no uploaded video in job {self.job_id}")
        return matches[0]

    @contextmanager
    def local_inputs(self) -> Iterator[LocalInputs]:
        """Private local copies of the upload (and the transcript, if any), deleted afterwards.

        The copies keep their blob names (``video.mp4``), so a media error reads "video.mp4: ...", never a
        server path, once the temporary folder is cut from it (:meth:`LocalInputs.video`'s parent).
        """
        with tempfile.TemporaryDirectory(prefix=f"empathy-{self.job_id[:8]}-") as tmp:
            video = self.storage.fetch(self.job_id, self.video_name(), Path(tmp) / self.video_name())
            transcript = None
            if self.storage.exists(self.job_id, TRANSCRIPT):
                transcript = self.storage.fetch(self.job_id, TRANSCRIPT, Path(tmp) / TRANSCRIPT)
            yield LocalInputs(video=video, transcript=transcript)

    # --- series ----------------------------------------------------------------------------------------
    def save_series(self, result: ModalityResult) -> str:
        """Store one modality's result; returns the blob name of its JSON descriptor (what goes through Redis)."""
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(result.values, dtype=np.float32))
        self.storage.put_bytes(self.job_id, f"series/{result.name}.npy", buffer.getvalue())
        name = series_name(result.name)
        self.storage.put_bytes(self.job_id, name, _json_bytes({
            "name": result.name, "status": result.status, "detail": result.detail,
            "seconds": round(float(result.seconds), 3), "model_version": result.model_version,
            "n_frames": int(np.asarray(result.values).size), "notes": list(result.notes),
        }))
        return name

    def has_series(self, modality: str) -> bool:
        return self.storage.exists(self.job_id, series_name(modality))

    def load_series(self, modality: str) -> ModalityResult:
        """Read back what :meth:`save_series` stored."""
        meta = json.loads(self.storage.get_bytes(self.job_id, series_name(modality)))
        values_name = f"series/{modality}.npy"
        values = (np.load(io.BytesIO(self.storage.get_bytes(self.job_id, values_name))).astype(np.float64)
                  if self.storage.exists(self.job_id, values_name) else np.zeros(0))
        return ModalityResult(name=modality, values=values, missing=~np.isfinite(values), status=meta["status"],
                              detail=meta.get("detail", ""), seconds=float(meta.get("seconds", 0.0)),
                              model_version=meta.get("model_version"), notes=list(meta.get("notes") or []))

    # --- result ----------------------------------------------------------------------------------------
    def write_result(self, document: Any) -> str:
        """Store the result document; returns its blob name."""
        self.storage.put_bytes(self.job_id, RESULT, _json_bytes(document))
        return RESULT

    def has_result(self) -> bool:
        return self.storage.exists(self.job_id, RESULT)

    def read_result(self) -> Any:
        return json.loads(self.storage.get_bytes(self.job_id, RESULT))
