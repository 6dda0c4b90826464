"""jobs.files on a real directory: the job layout, series written and read back, atomic JSON, removal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jobs.files import (
    find_video,
    job_dir,
    load_series,
    read_json,
    remove_job,
    save_series,
    series_paths,
    write_json,
)
from shared.pipeline import ModalityResult

JOB = "0123456789abcdef0123456789abcdef"


def _result(values: np.ndarray, **kw: object) -> ModalityResult:
    return ModalityResult(name="face", values=values, missing=~np.isfinite(values), status=kw.pop("status", "ok"),
                          **kw)


def test_a_job_lives_in_its_own_directory(tmp_path: Path) -> None:
    assert job_dir(tmp_path, JOB) == tmp_path / "jobs" / JOB
    assert job_dir(str(tmp_path), JOB) == job_dir(tmp_path, JOB)
    assert series_paths(job_dir(tmp_path, JOB), "face") == (tmp_path / "jobs" / JOB / "series" / "face.npy",
                                                          tmp_path / "jobs" / JOB / "series" / "face.json")


def test_a_series_reads_back_as_it_was_saved(tmp_path: Path) -> None:
    directory = job_dir(tmp_path, JOB)
    values = np.array([0.25, np.nan, -0.5, np.nan, 1.0])
    meta_path = save_series(directory, _result(values, detail="face lost in 2 frames", seconds=1.23456,
                                               model_version=3, notes=["listener: right half"],
                                               quality={"no_signal": "", "face": {"coverage": 0.6}}))
    assert meta_path == directory / "series" / "face.json"
    meta = json.loads(meta_path.read_text())
    assert meta == {"name": "face", "status": "ok", "detail": "face lost in 2 frames", "seconds": 1.235,
                    "model_version": 3, "n_frames": 5, "notes": ["listener: right half"],
                    "quality": {"no_signal": "", "face": {"coverage": 0.6}}}
    assert np.load(directory / "series" / "face.npy").dtype == np.float32  # half the bytes of float64
    loaded = load_series(directory, "face")
    np.testing.assert_array_equal(loaded.values, values.astype(np.float32).astype(np.float64))
    assert loaded.values.dtype == np.float64
    assert loaded.missing.tolist() == [False, True, False, True, False]
    assert (loaded.status, loaded.detail, loaded.seconds, loaded.model_version, loaded.notes, loaded.quality) == (
        "ok", "face lost in 2 frames", 1.235, 3, ["listener: right half"], {"no_signal": "", "face": {"coverage": 0.6}})
    assert sorted(p.name for p in (directory / "series").iterdir()) == ["face.json", "face.npy"]  # no temp files


def test_a_failed_modality_without_values_reads_back_empty(tmp_path: Path) -> None:
    directory = job_dir(tmp_path, JOB)
    save_series(directory, _result(np.zeros(0), status="failed", detail="video.mp4: truncated"))
    (directory / "series" / "face.npy").unlink()  # what a worker that stored only the descriptor leaves
    loaded = load_series(directory, "face")
    assert loaded.status == "failed" and loaded.detail == "video.mp4: truncated"
    assert loaded.values.size == 0 and loaded.missing.size == 0 and loaded.model_version is None


def test_json_documents_are_strict_and_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "result.json"
    write_json(path, {"valence": [0.1, None], "n_frames": 2})
    assert read_json(path) == {"valence": [0.1, None], "n_frames": 2}
    assert path.read_text() == '{"valence":[0.1,null],"n_frames":2}'  # compact
    with pytest.raises(ValueError):
        write_json(path, {"valence": [float("nan")]})  # JSON has no NaN: never written as one
    assert read_json(path)["n_frames"] == 2  # the previous document is intact
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_the_upload_is_found_whatever_its_extension(tmp_path: Path) -> None:
    directory = job_dir(tmp_path, JOB)
    directory.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no uploaded video"):
        find_video(directory)
    (directory / "video.mkv").write_bytes(b"x")
    (directory / "transcript.json").write_text("{}")
    assert find_video(directory) == directory / "video.mkv"


def test_removing_a_job_removes_its_files_only(tmp_path: Path) -> None:
    other = "f" * 32
    for job_id in (JOB, other):
        save_series(job_dir(tmp_path, job_id), _result(np.ones(3)))
    assert remove_job(tmp_path, JOB) is True
    assert not job_dir(tmp_path, JOB).exists() and load_series(job_dir(tmp_path, other), "face").values.size == 3
    assert remove_job(tmp_path, JOB) is False
