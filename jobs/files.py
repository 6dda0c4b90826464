"""Job files on the shared storage volume: the uploaded video, per-modality series, the fused result.

Layout under ``<storage_dir>/jobs/<id>/``::

    video<.ext>            the upload, as received
    series/<m>.npy         float32 (n_frames,) post-processed valence, NaN where the modality saw nothing
    series/<m>.json        {"name", "status", "detail", "seconds", "model_version", "n_frames", "notes", "quality"}
    result.json            the result document (shared.results)

Celery messages and Redis carry paths and statuses only ("results by reference"): a 10-minute video is
15 000 floats per modality, which has no business in a broker. Files are written to a temporary name and
renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from shared.pipeline import ModalityResult


def job_dir(storage_dir: Path | str, job_id: str) -> Path:
    return Path(storage_dir) / "jobs" / job_id


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json(path: Path, document: Any) -> None:
    _atomic_write_bytes(path, json.dumps(document, allow_nan=False, separators=(",", ":")).encode())


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def find_video(directory: Path) -> Path:
    """The uploaded video of a job directory (``video.<ext>``)."""
    matches = sorted(directory.glob("video.*"))
    if not matches:
        raise FileNotFoundError(f"no uploaded video in {directory}")
    return matches[0]


def series_paths(directory: Path, name: str) -> tuple[Path, Path]:
    return directory / "series" / f"{name}.npy", directory / "series" / f"{name}.json"


def save_series(directory: Path, result: ModalityResult) -> Path:
    """Store one modality's result; returns the path of its JSON descriptor (what goes through Redis)."""
    values_path, meta_path = series_paths(directory, result.name)
    values_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = values_path.with_name(f".{values_path.name}.tmp-{os.getpid()}.npy")
    np.save(tmp, np.asarray(result.values, dtype=np.float32))
    os.replace(tmp, values_path)
    write_json(meta_path, {
        "name": result.name, "status": result.status, "detail": result.detail,
        "seconds": round(float(result.seconds), 3), "model_version": result.model_version,
        "n_frames": int(np.asarray(result.values).size), "notes": list(result.notes),
        "quality": dict(result.quality),
    })
    return meta_path


def load_series(directory: Path, name: str) -> ModalityResult:
    """Read back what :func:`save_series` stored."""
    values_path, meta_path = series_paths(directory, name)
    meta = read_json(meta_path)
    values = np.load(values_path).astype(np.float64) if values_path.is_file() else np.zeros(0)
    return ModalityResult(name=name, values=values, missing=~np.isfinite(values), status=meta["status"],
                          detail=meta.get("detail", ""), seconds=float(meta.get("seconds", 0.0)),
                          model_version=meta.get("model_version"), notes=list(meta.get("notes") or []),
                          quality=dict(meta.get("quality") or {}))


def remove_job(storage_dir: Path | str, job_id: str) -> bool:
    directory = job_dir(storage_dir, job_id)
    if not directory.exists():
        return False
    shutil.rmtree(directory)
    return True
