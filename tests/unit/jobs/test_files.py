"""jobs.files over the local storage backend: the job layout, series written and read back, atomic JSON,
private copies of the inputs, removal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jobs.files import JobFiles, series_name, write_json
from jobs.storage.local import LocalStorage
from shared.values import ModalityResult

JOB = "0123456789abcdef0123456789abcdef"


def _result(values: np.ndarray, **kw: object) -> ModalityResult:
    return ModalityResult(name="face", values=values, missing=~np.isfinite(values), status=kw.pop("status", "ok"),
                          **kw)


def _files(root: Path, job_id: str = JOB) -> JobFiles:
    return JobFiles(LocalStorage(root), job_id)


def test_a_job_lives_in_its_own_directory(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    assert storage.job_dir(JOB) == tmp_path / "jobs" / JOB
    assert storage.path(JOB, series_name("face")) == tmp_path / "jobs" / JOB / "series" / "face.json"


def test_a_series_reads_back_as_it_was_saved(tmp_path: Path) -> None:
    files = _files(tmp_path)
    directory = LocalStorage(tmp_path).job_dir(JOB)
    values = np.array([0.25, np.nan, -0.5, np.nan, 1.0])
    name = files.save_series(_result(values, detail="face lost in 2 frames", seconds=1.23456, model_version=3,
                                     notes=["listener: right half"]))
    assert name == "series/face.json" and files.has_series("face") and not files.has_series("body")
    meta = json.loads((directory / name).read_text())
    assert meta == {"name": "face", "status": "ok", "detail": "face lost in 2 frames", "seconds": 1.235,
                    "model_version": 3, "n_frames": 5, "notes": ["listener: right half"]}
    assert np.load(directory / "series" / "face.npy").dtype == np.float32  # half the bytes of float64
    loaded = files.load_series("face")
    np.testing.assert_array_equal(loaded.values, values.astype(np.float32).astype(np.float64))
    assert loaded.values.dtype == np.float64
    assert loaded.missing.tolist() == [False, True, False, True, False]
    assert (loaded.status, loaded.detail, loaded.seconds, loaded.model_version, loaded.notes) == (
        "ok", "face lost in 2 frames", 1.235, 3, ["listener: right half"])
    assert sorted(p.name for p in (directory / "series").iterdir()) == ["face.json", "face.npy"]  # no temp files


def test_a_failed_modality_without_values_reads_back_empty(tmp_path: Path) -> None:
    files = _files(tmp_path)
    files.save_series(_result(np.zeros(0), status="failed", detail="video.mp4: truncated"))
    LocalStorage(tmp_path).path(JOB, "series/face.npy").unlink()  # what a worker that stored only the descriptor leaves
    loaded = files.load_series("face")
    assert loaded.status == "failed" and loaded.detail == "video.mp4: truncated"
    assert loaded.values.size == 0 and loaded.missing.size == 0 and loaded.model_version is None


def test_json_documents_are_strict_and_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "result.json"
    write_json(path, {"valence": [0.1, None], "n_frames": 2})
    assert json.loads(path.read_text()) == {"valence": [0.1, None], "n_frames": 2}
    assert path.read_text() == '{"valence":[0.1,null],"n_frames":2}'  # compact
    with pytest.raises(ValueError):
        write_json(path, {"valence": [float("nan")]})  # JSON has no NaN: never written as one
    assert json.loads(path.read_text())["n_frames"] == 2  # the previous document is intact
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]
    files = _files(tmp_path)
    assert not files.has_result()
    files.write_result({"n_frames": 2})
    with pytest.raises(ValueError):
        files.write_result({"valence": [float("nan")]})
    assert files.read_result() == {"n_frames": 2}
    assert LocalStorage(tmp_path).names(JOB) == ["result.json"]  # no temporary file left


def test_the_upload_is_found_whatever_its_extension_and_copied_privately(tmp_path: Path) -> None:
    files = _files(tmp_path / "storage")
    with pytest.raises(FileNotFoundError, match="no uploaded video"):
        files.video_name()
    upload = tmp_path / "upload.tmp"
    upload.write_bytes(b"x" * 10)
    assert files.put_video(upload, ".mkv", move=True) == "video.mkv" and not upload.exists()
    (tmp_path / "words.json").write_text("{}")
    files.put_transcript(tmp_path / "words.json")
    assert files.video_name() == "video.mkv" and (tmp_path / "words.json").exists()  # copied, not moved
    with files.local_inputs() as inputs:
        assert inputs.video.name == "video.mkv" and inputs.video.read_bytes() == b"x" * 10
        assert inputs.transcript is not None and inputs.transcript.read_text() == "{}"
        assert not inputs.video.is_relative_to(tmp_path / "storage")  # a private copy, not the stored file
        folder = inputs.video.parent
    assert not folder.exists()  # deleted afterwards
    assert files.video_name() == "video.mkv"  # the stored upload is untouched


def test_removing_a_job_removes_its_files_only(tmp_path: Path) -> None:
    other = "f" * 32
    for job_id in (JOB, other):
        _files(tmp_path, job_id).save_series(_result(np.ones(3)))
    assert _files(tmp_path).exists() and _files(tmp_path).delete() is True
    assert not _files(tmp_path).exists() and _files(tmp_path, other).load_series("face").values.size == 3
    assert _files(tmp_path).delete() is False
