"""The job storage seam (jobs.storage): the backend a setting picks, names that cannot escape a job, atomic
writes, streams, private copies and retention. The same contract runs against every backend: the local
folder and a real S3 server (SeaweedFS ``weed mini``, the ``s3_server`` fixture), a fresh bucket per test."""

from __future__ import annotations

import io
import os
import threading
import time
import uuid
from pathlib import Path

import pytest

from jobs.storage import BACKENDS, BlobNotFound, JobStorage, open_storage
from jobs.storage.local import LocalStorage
from shared.ports import free_port
from shared.settings import Settings

JOB = "0123456789abcdef0123456789abcdef"


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> JobStorage:
    settings = Settings(storage_dir=tmp_path / "storage", storage_backend=request.param)
    if request.param == "s3":
        bucket = f"t-{uuid.uuid4().hex[:20]}"
        settings = request.getfixturevalue("s3_server").settings(settings, s3_bucket=bucket, s3_create_bucket=True)
    return open_storage(settings)


def test_the_setting_picks_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_storage(Settings(storage_dir=tmp_path)), LocalStorage)
    assert set(BACKENDS) >= {"local"}
    with pytest.raises(ValueError, match="EMPATHY_STORAGE_BACKEND='ftp' is not a storage backend; expected one of"):
        open_storage(Settings(storage_backend="ftp"))


def test_blobs_round_trip_and_are_listed(storage: JobStorage, tmp_path: Path) -> None:
    assert not storage.job_exists(JOB) and storage.names(JOB) == []
    storage.put_bytes(JOB, "result.json", b"{}")
    storage.put_stream(JOB, "series/audio.npy", io.BytesIO(b"\x93NUMPY" * 1000))
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"video")
    storage.put_file(JOB, "video.mp4", source)
    assert source.read_bytes() == b"video"  # not moved unless asked
    assert storage.job_exists(JOB) and storage.names(JOB) == ["result.json", "series/audio.npy", "video.mp4"]
    assert storage.get_bytes(JOB, "series/audio.npy") == b"\x93NUMPY" * 1000
    with storage.open(JOB, "video.mp4") as handle:
        assert handle.read(3) == b"vid"
    copy = storage.fetch(JOB, "video.mp4", tmp_path / "private.mp4")
    assert copy.read_bytes() == b"video"
    storage.put_bytes(JOB, "video.mp4", b"replaced")  # a blob is replaced, never changed in place:
    assert copy.read_bytes() == b"video"  # the private copy keeps what it was
    assert storage.exists(JOB, "video.mp4") and not storage.exists(JOB, "video.mkv")
    with pytest.raises(BlobNotFound):
        storage.get_bytes(JOB, "video.mkv")
    with pytest.raises(BlobNotFound):
        storage.fetch(JOB, "video.mkv", tmp_path / "missing.mkv")
    assert storage.delete(JOB) and not storage.job_exists(JOB) and storage.delete(JOB) is False


def test_names_cannot_leave_the_job(storage: JobStorage) -> None:
    for job_id, name in ((JOB, "../other/video.mp4"), (JOB, "/etc/passwd"), (JOB, ".hidden"), (JOB, "a//b"),
                         (JOB, "series/../../x"), ("../" + JOB, "video.mp4"), (JOB.upper(), "video.mp4")):
        with pytest.raises(ValueError):
            storage.put_bytes(job_id, name, b"x")


def test_a_reader_never_sees_half_a_blob(storage: JobStorage) -> None:
    big, small = b"a" * (4 << 20), b"b" * 10
    storage.put_bytes(JOB, "result.json", small)
    seen: set[int] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.add(len(storage.get_bytes(JOB, "result.json")))

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(20):
        storage.put_bytes(JOB, "result.json", big)
        storage.put_bytes(JOB, "result.json", small)
    done.set()
    reader.join()
    assert seen <= {len(big), len(small)} and len(small) in seen
    assert storage.names(JOB) == ["result.json"]  # no temporary file left behind


def test_local_moves_an_upload_on_the_same_volume(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    upload = tmp_path / "storage" / "uploads" / ".upload-1"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"v" * 100)
    inode = upload.stat().st_ino
    storage.put_file(JOB, "video.mp4", upload, move=True)
    assert not upload.exists() and storage.path(JOB, "video.mp4").stat().st_ino == inode  # a rename, no copy


def test_retention_removes_jobs_whose_newest_blob_is_older(storage: JobStorage) -> None:
    old, fresh = JOB, "f" * 32
    storage.put_bytes(old, "video.mp4", b"v")
    storage.put_bytes(old, "series/audio.npy", b"s")
    storage.put_bytes(fresh, "result.json", b"{}")
    assert storage.expire(3600) == []  # nothing is an hour old yet
    assert storage.names(old) == ["series/audio.npy", "video.mp4"]
    later = time.time() + 3600 + 60  # an hour later, without waiting one: the clock is an argument
    assert storage.expire(3600, now=later) == sorted([old, fresh])
    assert storage.names(old) == [] and storage.names(fresh) == [] and not storage.job_exists(old)
    storage.put_bytes(old, "result.json", b"{}")
    time.sleep(2.2)  # S3 stamps whole seconds: a fresh blob may look up to 1 s old
    storage.put_bytes(fresh, "result.json", b"{}")
    assert storage.expire(1.6) == [old] and storage.job_exists(fresh)


def test_the_running_system_sweeps_at_most_every_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the fusion worker calls after each job: a sweep when due, never more often than SWEEP_EVERY_S, none
    with retention 0, and a store that fails is logged, not raised (the job that just finished stands)."""
    from jobs.storage import retention

    monkeypatch.setattr(retention, "_last_sweep", 0.0)
    settings = Settings(storage_dir=tmp_path / "storage", result_retention_s=60)
    storage = open_storage(settings)
    storage.put_bytes(JOB, "result.json", b"{}")
    old = time.time() - 120
    for path in (tmp_path / "storage" / "jobs" / JOB).rglob("*"):
        os.utime(path, (old, old))
    assert retention.sweep_if_due(storage, Settings(storage_dir=tmp_path / "storage", result_retention_s=0)) is None
    assert storage.job_exists(JOB)
    assert retention.sweep_if_due(storage, settings, now=1000.0) == [JOB] and not storage.job_exists(JOB)
    storage.put_bytes(JOB, "result.json", b"{}")
    for path in (tmp_path / "storage" / "jobs" / JOB).rglob("*"):
        os.utime(path, (old, old))
    assert retention.sweep_if_due(storage, settings, now=1000.0 + retention.SWEEP_EVERY_S - 1) is None
    assert storage.job_exists(JOB)  # not due yet
    assert retention.sweep_if_due(storage, settings, now=1000.0 + retention.SWEEP_EVERY_S + 1) == [JOB]

    nowhere = open_storage(Settings(storage_backend="s3", s3_endpoint_url=f"http://127.0.0.1:{free_port()}"))
    monkeypatch.setattr(retention, "_last_sweep", 0.0)  # an object store nobody answers for
    assert retention.sweep_if_due(nowhere, settings, now=5000.0) is None
